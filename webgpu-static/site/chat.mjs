// The chat page: a language model in the page (llm.mjs) on WebGPU or WebAssembly, its files from this site
// kept in the browser's cache (model-files.mjs), and, on request, the same conversation sent to the server
// (server-chat.mjs) with time to first token and tokens/s for both.
//
// For tests and scripts the page publishes its state in the DOM:
//   body[data-state]         loading | ready | generating | no-model (the page works, no model is loaded)
//   body[data-ep]            the backend the model runs on (webgpu | wasm)
//   body[data-model-source]  network | cache (where the last load found the model files)
//   output#chat-json         JSON of the last turn; its data-seq attribute counts turns
// URL parameters: ?model=NAME, ?ep=auto|webgpu|wasm, ?max_tokens=N, ?threads=N (WASM threads).
import { chooseBackend, probeWebGPU, withoutSubgroupsOnFallbackAdapters } from './webgpu.mjs';
import {
  ModelError, browserCacheAvailable, describeModel, fetchFiles, forgetModel, formatBytes, listModels, parseJson,
  weightFiles,
} from './model-files.mjs';
import { ChatModel } from './llm.mjs';
import { askServer, routerKey, serverModels, setRouterKey } from './server-chat.mjs';

const config = JSON.parse(document.getElementById('site-config').textContent);
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const body = document.body;
const EP_NAMES = { webgpu: 'WebGPU', wasm: 'WebAssembly (CPU)' };

const state = {
  libs: null, // {ort, Tokenizer, Template}
  gpu: null,
  model: null, // ChatModel
  messages: [],
  turn: null, // {stop: boolean, abort: AbortController} while answering
  seq: 0,
};

function fmtMs(ms) {
  return ms === null || ms === undefined ? '—' : ms < 100 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(0)} ms`;
}

function fmtRate(rate) {
  return rate === null || rate === undefined ? '—' : `${rate.toFixed(1)} tokens/s`;
}

function showError(id, error) {
  const element = $(id);
  element.hidden = !error;
  if (!error) element.textContent = '';
  else if (error instanceof ModelError) element.textContent = `The model cannot be used: ${error.message}.`;
  else element.textContent = String(error.message ?? error);
  if (error) console.error(error);
}

function setBusy(busy) {
  $('send').disabled = busy || !state.model;
  $('stop').disabled = !busy;
  $('reload-model').disabled = busy;
  $('model').disabled = busy;
}

// ---------------------------------------------------------------------------------------------------------
// Loading a model
/** {ep, note}: the backend (the digits page's rule, webgpu.mjs) and why, in this page's words. */
function backendFor(choice) {
  const gpu = state.gpu;
  const { ep, why } = chooseBackend(choice, gpu);
  const notes = {
    wasm: 'WebAssembly (CPU) was chosen.',
    fallback: `WebGPU is unavailable (${gpu.reason}), so the model runs on WebAssembly (CPU).`,
    'fallback-adapter-skipped': `WebGPU is only a software fallback adapter here (${gpu.label}), much slower than ` +
      'WebAssembly, so Auto runs the model on WebAssembly (CPU). Choose WebGPU to run on it anyway.',
    'webgpu-fallback-adapter': `The model runs on WebGPU (${gpu.label} — a software fallback adapter, expect it ` +
      'to be slow).',
    webgpu: `The model runs on WebGPU (${gpu.label}).`,
  };
  return { ep, note: notes[why] };
}

function showProgress({ loaded, total, fromCache }) {
  const bar = $('download');
  bar.hidden = false;
  bar.max = total;
  bar.value = loaded;
  $('model-status').textContent = fromCache
    ? `reading the model from the browser cache: ${formatBytes(loaded)} of ${formatBytes(total)}…`
    : `downloading the model: ${formatBytes(loaded)} of ${formatBytes(total)}…`;
}

async function loadFiles(name) {
  const model = await describeModel(name);
  const first = await fetchFiles(model, ['genai_config.json']);
  const genaiConfig = parseJson(model, 'genai_config.json', first.bytes.get('genai_config.json'));
  const weights = weightFiles(model, genaiConfig);
  const extras = model.sizes.has('chat_template.jinja') ? ['chat_template.jinja'] : [];
  const rest = await fetchFiles(
    model, ['tokenizer.json', 'tokenizer_config.json', ...extras, weights.decoder, ...weights.data], showProgress,
  );
  const files = new Map([...first.bytes, ...rest.bytes]);
  const fromNetwork = [...first.fromNetwork, ...rest.fromNetwork];
  return { model, genaiConfig, weights, files, fromNetwork, notKept: [...first.notKept, ...rest.notKept] };
}

async function createModel(loaded, ep) {
  const { model, genaiConfig, weights, files } = loaded;
  $('model-status').textContent = `starting ONNX Runtime on ${EP_NAMES[ep]}…`;
  const shaderF16 = Boolean(state.gpu.shaderF16);
  return ChatModel.load({ libs: state.libs, name: model.name, genaiConfig, files, weights, ep, shaderF16 });
}

async function loadModel() {
  const name = $('model').value;
  const choice = new FormData($('model-form')).get('ep');
  body.dataset.state = 'loading';
  setBusy(true);
  showError('model-error', null);
  await state.model?.release();
  state.model = null;
  const started = performance.now();
  let loaded;
  try {
    if (!name) throw new ModelError('no model folder is mounted on this site: see "Models" in the docs');
    loaded = await loadFiles(name);
    let { ep, note } = backendFor(choice);
    try {
      state.model = await createModel(loaded, ep);
    } catch (error) {
      if (ep !== 'webgpu') throw error;
      note = `WebGPU could not run it (${error.message}), so it runs on WebAssembly (CPU).`;
      ep = 'wasm';
      state.model = await createModel(loaded, ep);
    }
    $('backend-note').textContent = note;
    showModel(loaded, ep, performance.now() - started);
  } catch (error) {
    // A file that cannot be used is not kept: a fixed folder is downloaded again on the next try.
    if (loaded) await forgetModel(loaded.model);
    body.dataset.state = 'no-model';
    $('model-status').textContent = '— no model loaded.';
    $('ep-active').textContent = '—';
    showError('model-error', error);
  } finally {
    $('download').hidden = true;
    setBusy(false);
  }
}

function whereFrom({ fromNetwork, notKept }) {
  if (!browserCacheAvailable()) {
    return 'downloaded (this page is not a secure context, so the browser keeps no cache: use localhost or HTTPS)';
  }
  if (notKept.length) {
    return `downloaded; the browser would not keep ${notKept.join(', ')} (its storage quota for this site, or a ` +
      'full disk), so the next visit downloads it again';
  }
  return fromNetwork.length ? 'downloaded (kept in the browser cache for next time)' : 'from the browser cache';
}

function showModel(loaded, ep, ms) {
  const { model, weights, fromNetwork } = loaded;
  body.dataset.ep = ep;
  body.dataset.modelSource = fromNetwork.length ? 'network' : 'cache';
  $('ep-active').textContent = EP_NAMES[ep];
  $('model-status').textContent = `— ready in ${fmtMs(ms)}, ${whereFrom(loaded)}.`;
  $('model-info').textContent = `Model: ${model.name}, ${formatBytes(weights.bytes)} of weights, context ` +
    `${state.model.contextLength} tokens. ONNX Runtime Web ${config.ortVersion}.`;
  $('browser-ran-on').textContent = ep === 'webgpu'
    ? `WebGPU (${state.gpu.label}${state.gpu.fallback ? ', software' : ''})`
    : `WebAssembly, ${state.libs.ort.env.wasm.numThreads} thread(s)`;
  body.dataset.state = 'ready';
}

// ---------------------------------------------------------------------------------------------------------
// A turn: the browser's answer, then (when asked) the server's, one after the other so neither slows the other
function settings() {
  const number = (id, fallback, min, max) => {
    const value = Number($(id).value);
    return Number.isFinite(value) && $(id).value !== '' ? Math.min(max, Math.max(min, value)) : fallback;
  };
  return {
    maxTokens: Math.round(number('max-tokens', 128, 1, 4096)),
    temperature: number('temperature', 0, 0, 2),
    topP: number('top-p', 1, 0.01, 1),
  };
}

function addMessage(role, text) {
  const item = document.createElement('li');
  item.dataset.role = role;
  item.textContent = text;
  $('messages').append(item);
  return item;
}

// Back to the browser's event loop. On WebAssembly every step of ONNX Runtime resolves without leaving the current
// task, so without this the whole answer ran in one task: nothing was shown until its end, and Stop could not be
// clicked (unseen with the tiny model, whose answers take milliseconds; a real model takes a second a token).
// A message: with scheduler.yield() the page still answered nothing until the end here; setTimeout waits 4 ms at least.
function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/** A Text node that replaces element's content, for an answer's text to be appended to (appendData) as it comes:
 * each token then costs its own text, not a rewrite of the whole answer. */
function textSink(element) {
  const node = document.createTextNode('');
  element.replaceChildren(node);
  return node;
}

async function answerInBrowser(prompt, options, item) {
  const generation = state.model.generate(prompt.ids, { ...options, shouldStop: () => state.turn.stop });
  const stream = state.model.textStream();
  const shown = textSink(item);
  const started = performance.now();
  const ids = [];
  let firstAt = null;
  let next;
  while (!(next = await generation.next()).done) {
    firstAt ??= performance.now();
    ids.push(next.value.id);
    shown.appendData(stream.push(next.value.id));
    await nextTask();
  }
  const ended = performance.now();
  shown.appendData(stream.end());
  // One full decode per answer: the streamed text must be exactly that (tests/browser check they are); if a
  // tokenizer's decoder ever made them differ, the full decode is the answer, shown and kept.
  const text = state.model.decode(ids);
  if (stream.text !== text) {
    console.warn('the streamed text differs from the full decode of the answer; showing the full decode');
    shown.data = text;
  }
  return {
    ids,
    text,
    streamedText: stream.text,
    reason: next.value,
    ttftMs: firstAt === null ? null : firstAt - started,
    tokensPerSecond: ids.length > 1 ? ((ids.length - 1) * 1000) / (ended - firstAt) : null,
  };
}

async function answerOnServer(messages, options) {
  const model = $('server-model').value;
  if (!$('compare').checked) return null;
  if (!model) {
    const why = $('server-status').textContent || 'the router listed no model';
    $('server-answer').textContent = `The server was not asked. ${why}`;
    return { model: null, error: why };
  }
  $('server-answer').textContent = '…';
  let shown = null; // the ellipsis stays until the first text
  try {
    const result = await askServer({
      model,
      messages,
      ...options,
      signal: state.turn.abort.signal,
      onText: (delta) => (shown ??= textSink($('server-answer'))).appendData(delta),
    });
    return { model, ...result };
  } catch (error) {
    const stopped = error.name === 'AbortError';
    $('server-answer').textContent = stopped ? '(stopped)' : `The server could not answer: ${error.message}`;
    return { model, error: stopped ? 'stopped' : error.message };
  }
}

function showFigures(browser, server) {
  $('browser-ttft').textContent = fmtMs(browser.ttftMs);
  $('browser-tps').textContent = fmtRate(browser.tokensPerSecond);
  $('browser-tokens').textContent = String(browser.ids.length);
  $('server-ran-on').textContent = server ? `${server.model} (router)` : '—';
  $('server-ttft').textContent = fmtMs(server?.ttftMs);
  $('server-tps').textContent = fmtRate(server?.tokensPerSecond);
  $('server-tokens').textContent = server?.tokens === undefined ? '—' : String(server.tokens);
}

async function send(event) {
  event.preventDefault();
  const content = $('prompt').value;
  if (!content.trim() || !state.model || state.turn) return;
  showError('chat-error', null);
  const messages = [...state.messages, { role: 'user', content }];
  const prompt = state.model.prompt(messages);
  const options = settings();
  if (prompt.ids.length >= state.model.contextLength) {
    const context = state.model.contextLength;
    showError('chat-error', new Error(`The conversation is ${prompt.ids.length} tokens, more than the model's ` +
      `context of ${context}: start a new chat (your message is still in the box).`));
    return;
  }
  state.turn = { stop: false, abort: new AbortController() };
  body.dataset.state = 'generating';
  setBusy(true);
  $('prompt').value = '';
  addMessage('user', content);
  const item = addMessage('assistant', '');
  try {
    const browser = await answerInBrowser(prompt, options, item);
    item.dataset.outcome = browser.reason;
    state.messages = [...messages, { role: 'assistant', content: browser.text }];
    const server = state.turn.stop ? null : await answerOnServer(messages, options);
    showFigures(browser, server);
    publish({ promptText: prompt.text, promptIds: prompt.ids, ...browser, ep: body.dataset.ep, options, server });
  } catch (error) {
    item.dataset.outcome = 'failed';
    state.messages = messages;
    showError('chat-error', new Error(`The answer failed: ${error.message ?? error}`));
  } finally {
    state.turn = null;
    body.dataset.state = state.model ? 'ready' : 'no-model';
    setBusy(false);
  }
}

function publish(turn) {
  state.seq += 1;
  const out = $('chat-json');
  out.textContent = JSON.stringify({ ...turn, messages: state.messages });
  out.dataset.seq = String(state.seq);
}

function stop() {
  if (!state.turn) return;
  state.turn.stop = true;
  state.turn.abort.abort();
}

function newChat() {
  stop();
  state.messages = [];
  $('messages').replaceChildren();
  showError('chat-error', null);
}

// ---------------------------------------------------------------------------------------------------------
// Start-up
async function loadLibraries() {
  const load = (url) => import(new URL(url, document.baseURI).href);
  const [ort, tokenizers, jinja] = await Promise.all([load(config.ort), load(config.tokenizers), load(config.jinja)]);
  ort.env.logLevel = 'error';
  const threads = Number.parseInt(params.get('threads') ?? '', 10);
  if (threads >= 1 && threads <= 16) ort.env.wasm.numThreads = threads;
  return { ort, Tokenizer: tokenizers.Tokenizer, Template: jinja.Template };
}

async function loadServerModels() {
  try {
    const ids = await serverModels();
    $('server-model').replaceChildren(...ids.map((id) => new Option(id, id)));
    $('server-status').textContent = `The router offers ${ids.length} model(s).`;
  } catch (error) {
    $('server-status').textContent = `Server comparison unavailable: ${error.message}`;
  }
}

function fillModels(names) {
  const wanted = params.get('model');
  $('model').replaceChildren(...names.map((name) => new Option(name, name, false, name === wanted)));
  if (wanted && !names.includes(wanted)) {
    $('model').append(new Option(`${wanted} (not found)`, wanted, false, true));
  }
}

async function start() {
  withoutSubgroupsOnFallbackAdapters();
  const choice = ['auto', 'webgpu', 'wasm'].includes(params.get('ep')) ? params.get('ep') : 'auto';
  $('model-form').elements.ep.value = choice;
  if (params.has('max_tokens')) $('max-tokens').value = params.get('max_tokens');
  $('router-key').value = routerKey();
  const [libs, gpu, names] = await Promise.all([loadLibraries(), probeWebGPU(), listModels(), loadServerModels()]);
  Object.assign(state, { libs, gpu });
  fillModels(names);
  $('model-form').addEventListener('change', (event) => {
    if (event.target.name === 'ep' || event.target.name === 'model') loadModel();
  });
  $('reload-model').addEventListener('click', loadModel);
  $('prompt-form').addEventListener('submit', send);
  $('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) send(event);
  });
  $('stop').addEventListener('click', stop);
  $('new-chat').addEventListener('click', newChat);
  $('router-key').addEventListener('change', () => {
    setRouterKey($('router-key').value);
    loadServerModels();
  });
  await loadModel();
}

start().catch((error) => {
  body.dataset.state = 'no-model';
  showError('model-error', error);
});
