// The digit classifier page: WebGPU capability check, execution provider choice, drawing pad and samples,
// inference with ONNX Runtime Web, latency figures. Everything is loaded from this page's own origin.
//
// For tests and scripts the page also publishes its state in the DOM:
//   body[data-state]        loading | ready | running | error
//   body[data-ep]           the execution provider that actually runs the model (webgpu | wasm)
//   body[data-ready-ms]     ms from navigation start until the model was ready (session created + first run)
//   body[data-first-run-ms] the active session's first (cold) inference
//   output#result-json      JSON of the last result; its data-seq attribute counts results
// URL parameters: ?ep=auto|webgpu|wasm (initial choice), ?runs=N (repeated runs per classification),
// ?threads=N (WASM threads).

import { chooseBackend, probeWebGPU } from './webgpu.mjs';

const config = JSON.parse(document.getElementById('site-config').textContent);
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const body = document.body;

const PAD = 280;
const KEY_STEP = 14;
const EP_NAMES = { webgpu: 'WebGPU', wasm: 'WebAssembly (CPU)' };

const state = {
  ort: null,
  modelBytes: null,
  gpu: null, // result of probeWebGPU()
  sessions: new Map(), // ep -> {session, ep, createMs, firstRunMs}
  active: null,
  choice: 'auto',
  lastInput: null, // {pixels, source, label}
  seq: 0,
  readyMs: null,
};

// ---------------------------------------------------------------------------------------------------------
// Serialise all work on the model: a session must not run two inferences at once, nor switch mid-run.
let queue = Promise.resolve();
function enqueue(task) {
  const next = queue.then(task);
  queue = next.catch(() => {});
  return next.catch(fail);
}

function fail(error) {
  console.error(error);
  body.dataset.state = 'error';
  $('session-status').textContent = `Error: ${error && error.message ? error.message : error}`;
}

function setStatus(text) {
  $('session-status').textContent = text;
}

function fmtMs(ms) {
  return ms < 1 ? `${ms.toFixed(3)} ms` : ms < 100 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function showGpu(gpu) {
  $('gpu-status').textContent = gpu.available ? 'available' : `not available: ${gpu.reason}`;
  $('gpu-adapter').textContent = gpu.available ? gpu.label : '—';
  $('gpu-fallback').textContent = gpu.available
    ? gpu.fallback ? 'yes: a software adapter (such as SwiftShader) that is much slower than a real GPU' : 'no'
    : '—';
  body.dataset.webgpu = gpu.available ? (gpu.fallback ? 'fallback' : 'available') : 'unavailable';
  $('isolation').textContent = self.crossOriginIsolated ? 'yes' : 'no (WASM runs single-threaded)';
}

// ---------------------------------------------------------------------------------------------------------
// Sessions
async function createSession(ep) {
  if (state.sessions.has(ep)) return state.sessions.get(ep);
  const started = performance.now();
  const session = await state.ort.InferenceSession.create(state.modelBytes.slice(), {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
  });
  const createMs = performance.now() - started;
  // The first run is the cold one (WebGPU compiles its shaders here); it is reported on its own.
  const t = performance.now();
  await session.run({ [session.inputNames[0]]: new state.ort.Tensor('float32', new Float32Array(64), [1, 64]) });
  const entry = { session, ep, createMs, firstRunMs: performance.now() - t };
  state.sessions.set(ep, entry);
  return entry;
}

function explain(why, problem) {
  const note = $('backend-note');
  const texts = {
    'fallback-adapter-skipped': 'WebGPU is only available through a software fallback adapter ' +
      `(${state.gpu.label}), which is much slower than WebAssembly, so Auto runs the model on WebAssembly (CPU). ` +
      'Choose WebGPU to run on it anyway.',
    fallback: `WebGPU is unavailable: ${problem}. The model runs on WebAssembly (CPU) instead. The predictions ` +
      'are the same; only the speed differs, and for a model this small the CPU is fast.',
    wasm: 'WebAssembly (CPU) was chosen.',
    'webgpu-fallback-adapter': 'The model runs on WebGPU, but the adapter is a software fallback (no GPU ' +
      'acceleration): expect it to be slower than WebAssembly.',
    webgpu: `The model runs on WebGPU (${state.gpu.label}).`,
  };
  note.dataset.kind = why;
  note.textContent = texts[why];
}

async function activate(choice) {
  body.dataset.state = 'loading';
  state.choice = choice;
  let { ep, why } = chooseBackend(choice, state.gpu);
  let problem = state.gpu.available ? '' : state.gpu.reason;
  setStatus(`creating the ${EP_NAMES[ep]} session…`);
  let entry;
  try {
    entry = await createSession(ep);
  } catch (error) {
    if (ep !== 'webgpu') throw error;
    console.warn('WebGPU session failed, using WASM', error);
    problem = `the WebGPU session could not be created (${error.message})`;
    ep = 'wasm';
    why = 'fallback';
    entry = await createSession(ep);
  }
  state.active = entry;
  explain(why, problem);
  const threads = state.ort.env.wasm.numThreads;
  $('wasm-threads').textContent = String(threads ?? '—');
  $('ep-active').textContent = EP_NAMES[ep];
  body.dataset.ep = ep;
  body.dataset.epRequested = choice;
  $('ran-on').textContent = ranOnLabel(ep);
  body.dataset.firstRunMs = entry.firstRunMs.toFixed(3);
  $('latency-first').textContent = `${fmtMs(entry.firstRunMs)} (cold, after a ${fmtMs(entry.createMs)} session start)`;
  if (state.readyMs === null) {
    state.readyMs = performance.now();
    body.dataset.readyMs = state.readyMs.toFixed(1);
    $('ready-time').textContent = `${fmtMs(state.readyMs)} after navigation start`;
  }
  setStatus('— ready.');
  body.dataset.state = 'ready';
  if (state.lastInput) await classify(state.lastInput);
}

function ranOnLabel(ep) {
  if (ep === 'webgpu') {
    return `WebGPU (${state.gpu.label}${state.gpu.fallback ? ', software fallback adapter' : ''})`;
  }
  const threads = state.ort.env.wasm.numThreads;
  return `WebAssembly (CPU), ${threads} thread${threads === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------------------------
// Inference
function repeatedRuns() {
  const value = Number.parseInt($('runs').value, 10);
  return Number.isFinite(value) ? Math.min(500, Math.max(1, value)) : 20;
}

async function classify(input) {
  if (!state.active) return;
  state.lastInput = input;
  body.dataset.state = 'running';
  const { session, ep } = state.active;
  const feeds = () => ({
    [session.inputNames[0]]: new state.ort.Tensor('float32', Float32Array.from(input.pixels), [1, 64]),
  });
  let t = performance.now();
  const output = await session.run(feeds());
  const latencyMs = performance.now() - t;
  const probabilities = Array.from(output[session.outputNames[0]].data);
  const runs = repeatedRuns();
  const times = [];
  for (let i = 0; i < runs; i += 1) {
    t = performance.now();
    await session.run(feeds());
    times.push(performance.now() - t);
  }
  const prediction = probabilities.indexOf(Math.max(...probabilities));
  const result = {
    source: input.source,
    label: input.label ?? null,
    prediction,
    probabilities,
    ep,
    requestedEp: state.choice,
    webgpu: state.gpu.available ? { fallback: state.gpu.fallback, ...state.gpu.info } : null,
    latencyMs,
    medianMs: median(times),
    runs,
    firstRunMs: state.active.firstRunMs,
    readyMs: state.readyMs,
    wasmThreads: state.ort.env.wasm.numThreads,
    crossOriginIsolated: self.crossOriginIsolated,
  };
  showResult(result);
  body.dataset.state = 'ready';
  return result;
}

function showResult(result) {
  const p = result.probabilities[result.prediction];
  $('prediction').textContent = String(result.prediction);
  $('prediction-detail').textContent = `Predicted ${result.prediction} with probability ${(p * 100).toFixed(1)} %` +
    (result.label === null ? ' (your drawing).' : ` (sample labelled ${result.label}).`);
  $('ran-on').textContent = ranOnLabel(result.ep);
  $('latency-median').textContent = `${fmtMs(result.medianMs)} over ${result.runs} run${result.runs === 1 ? '' : 's'} ` +
    `(this input's first run: ${fmtMs(result.latencyMs)})`;
  const list = $('probabilities');
  list.replaceChildren(...result.probabilities.map((value, digit) => {
    const item = document.createElement('li');
    if (digit === result.prediction) item.className = 'top';
    const name = document.createElement('span');
    name.className = 'digit';
    name.textContent = String(digit);
    const meter = document.createElement('meter');
    meter.min = 0;
    meter.max = 1;
    meter.value = value;
    meter.setAttribute('aria-label', `digit ${digit}`);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = `${(value * 100).toFixed(2)} %`;
    item.append(name, meter, pct);
    return item;
  }));
  state.seq += 1;
  const out = $('result-json');
  out.textContent = JSON.stringify(result);
  out.dataset.seq = String(state.seq);
}

// ---------------------------------------------------------------------------------------------------------
// Drawing pad (pointer and keyboard) and the 8x8 model input
const pad = $('pad');
const padCtx = pad.getContext('2d');
const ink = document.createElement('canvas');
ink.width = PAD;
ink.height = PAD;
const inkCtx = ink.getContext('2d', { willReadFrequently: true });
const pen = { x: PAD / 2, y: PAD / 2, down: false, keyboard: false, drawn: false };

function clearInk() {
  inkCtx.fillStyle = '#000';
  inkCtx.fillRect(0, 0, PAD, PAD);
  pen.drawn = false;
  render();
}

function stroke(x0, y0, x1, y1) {
  inkCtx.strokeStyle = '#fff';
  inkCtx.lineWidth = 20;
  inkCtx.lineCap = 'round';
  inkCtx.lineJoin = 'round';
  inkCtx.beginPath();
  inkCtx.moveTo(x0, y0);
  inkCtx.lineTo(x1, y1);
  inkCtx.stroke();
  pen.drawn = true;
}

function render() {
  padCtx.drawImage(ink, 0, 0);
  if (pen.keyboard && document.activeElement === pad) {
    padCtx.strokeStyle = pen.down ? '#ffb000' : '#4aa3ff';
    padCtx.lineWidth = 2;
    padCtx.beginPath();
    padCtx.arc(pen.x, pen.y, 12, 0, Math.PI * 2);
    padCtx.stroke();
  }
}

// Like the data set's preprocessing: the glyph's bounding box scaled into a 32x32 bitmap, then the ink of
// each 4x4 block counted (0..16) and divided by 16.
function drawingToPixels() {
  const { data } = inkCtx.getImageData(0, 0, PAD, PAD);
  let minX = PAD, minY = PAD, maxX = -1, maxY = -1;
  for (let y = 0; y < PAD; y += 1) {
    for (let x = 0; x < PAD; x += 1) {
      if (data[(y * PAD + x) * 4] > 32) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
    }
  }
  if (maxX < 0) return null;
  const w = maxX - minX + 1, h = maxY - minY + 1;
  const scale = 28 / Math.max(w, h);
  const small = document.createElement('canvas');
  small.width = 32;
  small.height = 32;
  const sctx = small.getContext('2d', { willReadFrequently: true });
  sctx.fillStyle = '#000';
  sctx.fillRect(0, 0, 32, 32);
  sctx.imageSmoothingEnabled = true;
  sctx.imageSmoothingQuality = 'high';
  sctx.drawImage(ink, minX, minY, w, h, (32 - w * scale) / 2, (32 - h * scale) / 2, w * scale, h * scale);
  const bits = sctx.getImageData(0, 0, 32, 32).data;
  const pixels = new Array(64).fill(0);
  for (let y = 0; y < 32; y += 1) {
    for (let x = 0; x < 32; x += 1) {
      if (bits[(y * 32 + x) * 4] > 96) pixels[(y >> 2) * 8 + (x >> 2)] += 1;
    }
  }
  return pixels.map((count) => count / 16);
}

function showPreview(pixels) {
  const preview = $('preview');
  const ctx = preview.getContext('2d');
  const image = ctx.createImageData(8, 8);
  pixels.forEach((v, i) => {
    const level = Math.round(v * 255);
    image.data.set([level, level, level, 255], i * 4);
  });
  ctx.putImageData(image, 0, 0);
}

function classifyDrawing() {
  const pixels = drawingToPixels();
  if (!pixels) {
    setStatus('draw a digit first.');
    return;
  }
  showPreview(pixels);
  enqueue(() => classify({ pixels, source: 'drawing' }));
}

function paintSample(pixels) {
  clearInk();
  const cell = PAD / 8;
  pixels.forEach((v, i) => {
    const level = Math.round(v * 255);
    inkCtx.fillStyle = `rgb(${level}, ${level}, ${level})`;
    inkCtx.fillRect((i % 8) * cell, Math.floor(i / 8) * cell, cell, cell);
  });
  pen.drawn = true;
  render();
  showPreview(pixels);
}

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return { x: ((event.clientX - rect.left) * PAD) / rect.width, y: ((event.clientY - rect.top) * PAD) / rect.height };
}

pad.addEventListener('pointerdown', (event) => {
  pad.setPointerCapture(event.pointerId);
  pen.keyboard = false;
  const p = padPoint(event);
  Object.assign(pen, p, { down: true });
  stroke(p.x, p.y, p.x, p.y);
  render();
  event.preventDefault();
});
pad.addEventListener('pointermove', (event) => {
  if (!pen.down || pen.keyboard) return;
  const p = padPoint(event);
  stroke(pen.x, pen.y, p.x, p.y);
  Object.assign(pen, p);
  render();
});
for (const type of ['pointerup', 'pointercancel']) {
  pad.addEventListener(type, () => {
    if (!pen.down || pen.keyboard) return;
    pen.down = false;
    classifyDrawing();
  });
}
pad.addEventListener('keydown', (event) => {
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (event.key in moves) {
    if (!pen.keyboard) Object.assign(pen, { keyboard: true, down: false });
    const [dx, dy] = moves[event.key];
    const x = Math.min(PAD, Math.max(0, pen.x + dx * KEY_STEP));
    const y = Math.min(PAD, Math.max(0, pen.y + dy * KEY_STEP));
    if (pen.down) stroke(pen.x, pen.y, x, y);
    Object.assign(pen, { x, y });
  } else if (event.key === ' ') {
    pen.keyboard = true;
    pen.down = !pen.down;
    if (pen.down) stroke(pen.x, pen.y, pen.x, pen.y);
  } else if (event.key === 'Enter') {
    classifyDrawing();
  } else if (event.key === 'Escape' || event.key === 'Delete') {
    clearInk();
  } else {
    return;
  }
  event.preventDefault();
  render();
});
pad.addEventListener('focus', render);
pad.addEventListener('blur', render);
$('clear').addEventListener('click', () => {
  clearInk();
  pad.focus();
});
$('classify').addEventListener('click', classifyDrawing);

// ---------------------------------------------------------------------------------------------------------
// Start-up
async function loadSamples() {
  const { samples } = await (await fetch(config.samples)).json();
  const group = $('samples');
  for (const sample of samples) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'sample';
    button.dataset.label = String(sample.label);
    button.setAttribute('aria-label', `Classify sample digit ${sample.label}`);
    const thumb = document.createElement('canvas');
    thumb.width = 8;
    thumb.height = 8;
    thumb.setAttribute('aria-hidden', 'true');
    const ctx = thumb.getContext('2d');
    const image = ctx.createImageData(8, 8);
    sample.pixels.forEach((v, i) => {
      const level = Math.round(v * 255);
      image.data.set([level, level, level, 255], i * 4);
    });
    ctx.putImageData(image, 0, 0);
    const text = document.createElement('span');
    text.textContent = String(sample.label);
    button.append(thumb, text);
    button.addEventListener('click', () => {
      paintSample(sample.pixels);
      enqueue(() => classify({ pixels: sample.pixels, source: 'sample', label: sample.label }));
    });
    group.append(button);
  }
}

async function loadModelInfo() {
  const info = await (await fetch(config.modelInfo)).json();
  $('model-info').textContent = `Model: ${info.name}, ${info.architecture}; operators ${info.operators.join(', ')}; ` +
    `test accuracy ${(info.test_accuracy * 100).toFixed(1)} % on ${info.test_images} held-out images. ` +
    `ONNX Runtime Web ${config.ortVersion}.`;
}

async function start() {
  clearInk();
  const choice = ['auto', 'webgpu', 'wasm'].includes(params.get('ep')) ? params.get('ep') : 'auto';
  const form = $('ep-form');
  form.elements.ep.value = choice;
  if (params.has('runs')) $('runs').value = params.get('runs');
  const [ort, gpu, modelBytes] = await Promise.all([
    import(new URL(config.ort, document.baseURI).href),
    probeWebGPU(),
    fetch(config.model).then((r) => {
      if (!r.ok) throw new Error(`model: HTTP ${r.status}`);
      return r.arrayBuffer();
    }),
    loadSamples(),
    loadModelInfo(),
  ]);
  ort.env.logLevel = 'error';
  // ?threads=N overrides ORT's default (half the cores, at most 4); more than one needs cross-origin isolation.
  const threads = Number.parseInt(params.get('threads') ?? '', 10);
  if (threads >= 1 && threads <= 16) ort.env.wasm.numThreads = threads;
  Object.assign(state, { ort, gpu, modelBytes: new Uint8Array(modelBytes) });
  showGpu(gpu);
  form.addEventListener('change', (event) => {
    if (event.target.name === 'ep') enqueue(() => activate(event.target.value));
  });
  form.addEventListener('submit', (event) => event.preventDefault());
  await enqueue(() => activate(choice));
}

window.addEventListener('unhandledrejection', (event) => fail(event.reason));
start().catch(fail);
