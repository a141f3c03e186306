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

// Folder listings that listModels has just read: the first describeModel of a folder uses its listing instead of
// asking again; later ones (Load again) ask.
const justListed = new Map();

/** The model folders (those with a genai_config.json), by name. */
export async function listModels() {
  const entries = (await listing(MODELS_BASE)) ?? [];
  const folders = entries.filter((entry) => entry.type === 'directory').map((entry) => entry.name).sort();
  const models = [];
  justListed.clear();
  for (const name of folders) {
    const url = `${MODELS_BASE}${encodeURIComponent(name)}/`;
    const files = await listing(url);
    if (files?.some((file) => file.name === 'genai_config.json')) models.push(name);
    justListed.set(url, files);
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
  const entries = justListed.get(url) ?? (await listing(url));
  justListed.delete(url);
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

async function download(url) {
  const response = await fetch(url, { cache: 'no-store' });
  if (!response.ok) throw new ModelError(`${url}: HTTP ${response.status}`);
  return response;
}

function counted(response, onBytes) {
  const counter = new TransformStream({
    transform(chunk, controller) {
      onBytes(chunk.byteLength);
      controller.enqueue(chunk);
    },
  });
  return new Response(response.body.pipeThrough(counter), { headers: response.headers });
}

/**
 * The body's bytes, read into one array of the size the folder lists. Never through a Blob: Chromium cannot
 * read back a Blob of several hundred MB that it could not keep in memory (NotReadableError), which a real
 * model's weights are.
 */
async function readAll(response, url, expected, onBytes = () => {}) {
  const bytes = new Uint8Array(expected);
  const reader = response.body.getReader();
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.byteLength <= expected) bytes.set(value, received);
    received += value.byteLength;
    onBytes(value.byteLength);
  }
  if (received !== expected) {
    throw new ModelError(`${url} arrived with ${received} bytes instead of the ${expected} the folder lists: ` +
      'the download was cut off or the file changed meanwhile; reload the page');
  }
  return bytes;
}

/**
 * The files' bytes by name, from Cache Storage when there, else downloaded: streamed into the cache and read
 * back from it, so the download is never held twice. onProgress gets {loaded, total, fromCache}.
 * Returns {bytes: Map name -> Uint8Array, fromNetwork: [names], notKept: [names the cache refused]}.
 */
export async function fetchFiles(model, names, onProgress = () => {}) {
  const cache = await openCache(model);
  const total = names.reduce((sum, file) => sum + model.sizes.get(file), 0);
  let loaded = 0;
  const progress = (fromCache) => (n) => {
    loaded += n;
    onProgress({ loaded, total, fromCache });
  };
  const bytes = new Map();
  const fromNetwork = [];
  const notKept = [];
  for (const file of names) {
    const url = new URL(`${model.url}${encodeURIComponent(file)}`, document.baseURI).href;
    const size = model.sizes.get(file);
    const cached = cache ? await cache.match(url) : undefined;
    if (cached) {
      bytes.set(file, await readAll(cached, url, size, progress(true)));
      continue;
    }
    fromNetwork.push(file);
    const stored = cache && (await store(cache, url, counted(await download(url), progress(false))));
    if (cache && !stored) notKept.push(file);
    const data = stored
      ? await readAll(stored, url, size)
      : await readAll(await download(url), url, size, progress(false));
    bytes.set(file, data);
  }
  return { bytes, fromNetwork, notKept };
}

/** The response as Cache Storage keeps it, or null when it could not (a full disk or quota): then the chat
 * goes on with a second download, kept in memory only. */
async function store(cache, url, response) {
  try {
    await cache.put(url, response);
    return await cache.match(url);
  } catch (error) {
    console.warn('not kept in the browser cache:', url, error);
    return null;
  }
}

/** JSON from fetched bytes, or a ModelError that names the file. */
export function parseJson(model, file, data) {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch (error) {
    throw new ModelError(`${file} of "${model.name}" is not valid JSON (${error.message}): the file is corrupt`);
  }
}
