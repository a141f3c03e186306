// What this browser offers for WebGPU, shared by the digits page and the chat page.

/** {available, fallback, info, label, shaderF16} or {available: false, reason}: a reason written for people. */
export async function probeWebGPU() {
  if (!('gpu' in navigator)) {
    return { available: false, reason: 'this browser has no WebGPU API (navigator.gpu is missing)' };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (error) {
    return { available: false, reason: `requesting a WebGPU adapter failed (${error.message})` };
  }
  if (!adapter) {
    return {
      available: false,
      reason: 'the browser offers the WebGPU API but returned no adapter (WebGPU is disabled or blocklisted ' +
        'for this GPU, or there is no usable GPU)',
    };
  }
  const info = adapter.info || {};
  const fallback = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const described = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' · ');
  return {
    available: true,
    fallback,
    info: {
      vendor: info.vendor || '',
      architecture: info.architecture || '',
      device: info.device || '',
      description: info.description || '',
    },
    label: described || 'unnamed adapter',
    // float16 models (ONNX Runtime GenAI's -e webgpu builds) need it; SwiftShader has none.
    shaderF16: adapter.features.has('shader-f16'),
  };
}

/**
 * Which backend runs a model, and why: the rule of both pages. An explicit choice is obeyed when it can be; no
 * adapter means WebAssembly; Auto prefers WebAssembly to a software fallback adapter, which is far slower.
 * `why` is one of 'wasm' (chosen), 'fallback' (no WebGPU), 'fallback-adapter-skipped', 'webgpu-fallback-adapter'
 * and 'webgpu'; each page says it in its own words.
 */
export function chooseBackend(choice, gpu) {
  if (choice === 'wasm') return { ep: 'wasm', why: 'wasm' };
  if (!gpu.available) return { ep: 'wasm', why: 'fallback' };
  if (choice === 'auto' && gpu.fallback) return { ep: 'wasm', why: 'fallback-adapter-skipped' };
  return { ep: 'webgpu', why: gpu.fallback ? 'webgpu-fallback-adapter' : 'webgpu' };
}

/**
 * Keep ONNX Runtime from asking a software (fallback) adapter for subgroup features. SwiftShader reports
 * subgroups of 4 lanes, and ORT 1.30's GroupQueryAttention gives wrong values from the fifth prompt token
 * with them (found while checking the chat against Python, token by token); without the feature ORT takes
 * its portable path, which matches. Hardware adapters keep every feature.
 */
export function withoutSubgroupsOnFallbackAdapters() {
  if (!globalThis.GPUAdapter || GPUAdapter.prototype.requestDevice.foundryPatched) return;
  const original = GPUAdapter.prototype.requestDevice;
  const patched = function requestDevice(descriptor = {}) {
    const fallback = Boolean(this.info?.isFallbackAdapter ?? this.isFallbackAdapter);
    if (!fallback || !descriptor.requiredFeatures) return original.call(this, descriptor);
    const requiredFeatures = [...descriptor.requiredFeatures].filter((name) => !name.startsWith('subgroup'));
    return original.call(this, { ...descriptor, requiredFeatures });
  };
  patched.foundryPatched = true;
  GPUAdapter.prototype.requestDevice = patched;
}
