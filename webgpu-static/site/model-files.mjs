// A model folder served by this site's nginx under models/NAME/ (ONNX Runtime GenAI's layout: genai_config.json,
// the decoder .onnx and its external data, tokenizer.json, tokenizer_config.json), fetched once with progress
// and kept in Cache Storage, so a second visit reads it from the browser without a model request.
//
// nginx lists each folder as JSON (autoindex): names, sizes and times. That listing is the one request a cached
// visit makes: a folder whose files changed gets a new cache, and the old one is deleted.

export const MODELS_BASE = 'models/';
const CACHE_PREFIX = 'foundry-browser-chat:';
const REQUIRED = ['genai_config.json', 'tokenizer.json', 'tokenizer_config.json'];
// ONNX Runtime Web runs in 32-bit WebAssembly: the weights pass through its 4 GiB memory on every backend.
export const WASM_MEMORY_BYTES = 4 * 1024 ** 3;

/** An error whose message is the whole story for the person reading the page. */
export class ModelError extends Error {}

async function listing(url) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store' });
  } catch (error) {
    throw new ModelError(`the site could not be reached for ${url} (${error.message})`);
  }
  if (response.status === 404) return null;
  if (!response.ok) throw new ModelError(`listing ${url} failed: HTTP ${response.status}`);
  return response.json();
}

/** The model folders (those with a genai_config.json), by name. */
export async function listModels() {
  const entries = (await listing(MODELS_BASE)) ?? [];
  const folders = entries.filter((entry) => entry.type === 'directory').map((entry) => entry.name).sort();
  const models = [];
  for (const name of folders) {
    const files = await listing(`${MODELS_BASE}${encodeURIComponent(name)}/`);
    if (files?.some((file) => file.name === 'genai_config.json')) models.push(name);
  }
  return models;
}

function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, '0');
}

export function formatBytes(bytes) {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}

/**
 * NAME's folder: {name, url, sizes: Map file -> bytes, version (changes with any file)}. Throws ModelError when
 * the folder or a file the chat needs is missing.
 */
export async function describeModel(name) {
  const url = `${MODELS_BASE}${encodeURIComponent(name)}/`;
  const entries = await listing(url);
  if (!entries) {
    throw new ModelError(`there is no model folder "${name}" on this site: mount one under the site's models/ ` +
      'folder (BROWSER_MODELS_DIR, see the docs) or pick another model');
  }
  const sizes = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.name, e.size]));
  const missing = REQUIRED.filter((file) => !sizes.has(file));
  if (missing.length) {
    throw new ModelError(`the model folder "${name}" has no ${missing.join(', ')}: it must be a model folder in ` +
      'ONNX Runtime GenAI format (as Foundry Local uses)');
  }
  return { name, url, sizes, version: fnv1a(JSON.stringify(entries)) };
}

/** The decoder file and its external data files (model.onnx.data, model.onnx_data…), from the listing. */
export function weightFiles(model, genaiConfig) {
  const decoder = genaiConfig.model?.decoder?.filename;
  if (!decoder) throw new ModelError(`genai_config.json of "${model.name}" names no model.decoder.filename`);
  if (!model.sizes.has(decoder)) {
    throw new ModelError(`the model folder "${model.name}" has no ${decoder}, the file its genai_config.json names`);
  }
  const data = [...model.sizes.keys()].filter((file) => file !== decoder && file.startsWith(decoder)).sort();
  const bytes = [decoder, ...data].reduce((sum, file) => sum + model.sizes.get(file), 0);
  if (bytes >= WASM_MEMORY_BYTES) {
    throw new ModelError(`"${model.name}" is too large for the browser: its weights are ${formatBytes(bytes)} and ` +
      `ONNX Runtime Web holds them in a WebAssembly memory of at most ${formatBytes(WASM_MEMORY_BYTES)}. ` +
      'Use a smaller or more quantized model (int4 weights of up to about 1.5B parameters fit).');
  }
  return { decoder, data, bytes };
}

/** Cache Storage needs a secure context (https, or http on localhost / 127.0.0.1). */
export function browserCacheAvailable() {
  return 'caches' in globalThis;
}

async function openCache(model) {
  if (!browserCacheAvailable()) return null;
  const name = `${CACHE_PREFIX}${model.name}:${model.version}`;
  for (const old of await caches.keys()) {
    if (old.startsWith(`${CACHE_PREFIX}${model.name}:`) && old !== name) await caches.delete(old);
  }
  return caches.open(name);
}

/** Forget NAME's cached files (after its files proved unusable, so the next try downloads them again). */
export async function forgetModel(model) {
  if (!browserCacheAvailable()) return;
  for (const key of await caches.keys()) {
    if (key.startsWith(`${CACHE_PREFIX}${model.name}:`)) await caches.delete(key);
  }
}

async function download(url, expected, onBytes) {
  const response = await fetch(url, { cache: 'no-store' });
  if (!response.ok) throw new ModelError(`${url}: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    onBytes(value.byteLength);
  }
  if (received !== expected) {
    throw new ModelError(`${url} arrived with ${received} bytes instead of the ${expected} the folder lists: ` +
      'the download was cut off or the file changed meanwhile; reload the page');
  }
  return new Blob(chunks);
}

/**
 * The files' bytes by name, from Cache Storage when there, else downloaded (and cached). onProgress gets
 * {loaded, total, fromCache}. Returns {bytes: Map name -> Uint8Array, fromNetwork: [names]}.
 */
export async function fetchFiles(model, names, onProgress = () => {}) {
  const cache = await openCache(model);
  const total = names.reduce((sum, file) => sum + model.sizes.get(file), 0);
  let loaded = 0;
  const bytes = new Map();
  const fromNetwork = [];
  for (const file of names) {
    const url = new URL(`${model.url}${encodeURIComponent(file)}`, document.baseURI).href;
    let blob = cache ? await (await cache.match(url))?.blob() : null;
    if (blob && blob.size !== model.sizes.get(file)) blob = null;
    if (blob) {
      loaded += blob.size;
      onProgress({ loaded, total, fromCache: true });
    } else {
      blob = await download(url, model.sizes.get(file), (n) => {
        loaded += n;
        onProgress({ loaded, total, fromCache: false });
      });
      fromNetwork.push(file);
      // A full disk or quota only costs the next visit a download: the chat goes on.
      if (cache) await cache.put(url, new Response(blob)).catch((error) => console.warn('not cached', file, error));
    }
    bytes.set(file, new Uint8Array(await blob.arrayBuffer()));
  }
  return { bytes, fromNetwork };
}

/** JSON from fetched bytes, or a ModelError that names the file. */
export function parseJson(model, file, data) {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch (error) {
    throw new ModelError(`${file} of "${model.name}" is not valid JSON (${error.message}): the file is corrupt`);
  }
}
