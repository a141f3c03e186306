// The same conversation sent to the server: the router's OpenAI-compatible endpoint, which nginx forwards
// under this site's own origin (v1/models and v1/chat/completions only), so the page needs no other origin.

const KEY_STORAGE = 'foundry-router-key';

export function routerKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? '';
}

export function setRouterKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

function headers() {
  const key = routerKey();
  return { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

async function explainFailure(response) {
  let detail = '';
  try {
    const body = await response.json();
    detail = body?.error?.message ?? body?.detail ?? '';
  } catch {
    detail = '';
  }
  if (response.status === 401) {
    return `the router wants an API key (${detail || 'HTTP 401'}): enter one of its ROUTER_API_KEYS under "Server"`;
  }
  if (response.status === 502 || response.status === 504) {
    return `the router cannot be reached from this site (HTTP ${response.status}): is the stack's router running?`;
  }
  return `the router answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`;
}

/** The router's model ids, or throws an Error written for people. */
export async function serverModels() {
  const response = await fetch('v1/models', { headers: headers() });
  if (!response.ok) throw new Error(await explainFailure(response));
  const body = await response.json();
  return (body.data ?? []).map((model) => model.id);
}

/**
 * Streams one answer from the router. onText(delta) per chunk with text: the text it adds. Returns {text (the
 * whole answer), ttftMs, tokens, tokensPerSecond, durationMs}; tokens from the usage the router reports, else one
 * per content chunk.
 */
export async function askServer({ model, messages, maxTokens, temperature, topP, signal, onText }) {
  const started = performance.now();
  const response = await fetch('v1/chat/completions', {
    method: 'POST',
    headers: headers(),
    signal,
    body: JSON.stringify({
      model,
      messages,
      max_tokens: maxTokens,
      temperature,
      top_p: topP,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!response.ok) throw new Error(await explainFailure(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let text = '';
  let chunks = 0;
  let usage = null;
  let firstAt = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split('\n\n');
    buffer = events.pop();
    for (const event of events) {
      const lines = event.split('\n').filter((line) => line.startsWith('data:'));
      const data = lines.map((line) => line.slice(5).trim()).join('');
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        throw new Error(`the router stopped the answer: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
      }
      usage = chunk.usage ?? usage;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        firstAt ??= performance.now();
        chunks += 1;
        text += delta;
        onText(delta);
      }
    }
  }
  const ended = performance.now();
  const tokens = usage?.completion_tokens ?? chunks;
  const decodeMs = firstAt === null ? 0 : ended - firstAt;
  return {
    text,
    ttftMs: firstAt === null ? null : firstAt - started,
    tokens,
    tokensPerSecond: tokens > 1 && decodeMs > 0 ? ((tokens - 1) * 1000) / decodeMs : null,
    durationMs: ended - started,
  };
}
