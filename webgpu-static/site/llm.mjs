// A chat model in the page: the tokenizer and chat template of a model folder (Hugging Face's tokenizers and
// jinja libraries), its decoder on ONNX Runtime Web, and the generation loop (KV cache, greedy or
// temperature/top-p sampling, stop, max tokens) that yields token ids as it goes, and their text as a stream.
import { pickToken } from './sampling.mjs';
import { ModelError } from './model-files.mjs';
import { TextStream } from './text-stream.mjs';

function specialToken(value) {
  return typeof value === 'string' ? value : value?.content ?? '';
}

function chatTemplate(tokenizerConfig, templateFile) {
  const template = templateFile ?? tokenizerConfig.chat_template;
  if (Array.isArray(template)) return template.find((t) => t.name === 'default')?.template ?? template[0]?.template;
  return template;
}

// Which output of a step feeds which input of the next (genai_config.json's name patterns).
const CACHE_NAMES = [['past_key_names', 'out_present_key_names'], ['past_value_names', 'out_present_value_names']];

function gpuResidentCache(genaiConfig) {
  const { num_hidden_layers: layers, outputs } = genaiConfig.model.decoder;
  const names = [];
  for (let layer = 0; layer < layers; layer += 1) {
    names.push(outputs.present_key_names.replace('%d', layer), outputs.present_value_names.replace('%d', layer));
  }
  return Object.fromEntries(names.map((name) => [name, 'gpu-buffer']));
}

export class ChatModel {
  /**
   * libs: {ort (the ONNX Runtime Web module), Tokenizer, Template}; files: Map name -> bytes of genai_config,
   * tokenizer, tokenizer_config (and chat_template.jinja when the folder has one); weights: {decoder, data}
   * names (their bytes in files too); ep: 'webgpu' | 'wasm'; shaderF16: whether the WebGPU adapter has it.
   */
  static async load({ libs, name, genaiConfig, files, weights, ep, shaderF16 = true }) {
    const { ort } = libs;
    const decode = (file) => new TextDecoder().decode(files.get(file));
    const tokenizerJson = JSON.parse(decode('tokenizer.json'));
    const tokenizerConfig = JSON.parse(decode('tokenizer_config.json'));
    const templateFile = files.has('chat_template.jinja') ? decode('chat_template.jinja') : null;
    const template = chatTemplate(tokenizerConfig, templateFile);
    if (!template) throw new ModelError(`"${name}" has no chat template (tokenizer_config.json chat_template)`);
    const tokenizer = new libs.Tokenizer(tokenizerJson, tokenizerConfig);
    let session;
    try {
      session = await ort.InferenceSession.create(files.get(weights.decoder), {
        executionProviders: [ep],
        // On WebGPU the KV cache stays on the GPU from one step to the next: copying it out and back in at each
        // token would cost more than the step itself on a real GPU. Only the logits come back.
        preferredOutputLocation: ep === 'webgpu' ? gpuResidentCache(genaiConfig) : undefined,
        graphOptimizationLevel: 'all',
        // Errors only: ORT's native warnings (nodes it keeps on the CPU for WebGPU) are not the reader's concern.
        logSeverityLevel: 3,
        externalData: weights.data.map((path) => ({ path, data: files.get(path) })),
      });
    } catch (error) {
      const message = String(error?.message ?? error);
      const memory = /memory|allocat|OOM|too large|exceeds/i.test(message);
      throw new ModelError(memory
        ? `"${name}" does not fit on ${ep === 'webgpu' ? 'this WebGPU adapter' : 'WebAssembly'} (${message}). ` +
          'Try the other backend or a smaller model.'
        : `ONNX Runtime could not load ${weights.decoder} of "${name}" on ${ep} (${message}). The file may be ` +
          'corrupt or truncated, or use an operator this runtime lacks: replace the model folder.');
    }
    const chat = new libs.Template(template);
    const model = new ChatModel({ ort, session, tokenizer, tokenizerConfig, template: chat, genaiConfig, ep });
    if (ep === 'webgpu' && model.kvType === 'float16' && !shaderF16) {
      // ORT creates the session, then fails at the first token: say so now.
      await model.release();
      throw new ModelError(`"${name}" computes in float16, and this WebGPU adapter has no shader-f16 feature`);
    }
    return model;
  }

  constructor({ ort, session, tokenizer, tokenizerConfig, template, genaiConfig, ep }) {
    Object.assign(this, { ort, session, tokenizer, tokenizerConfig, template, ep });
    const model = genaiConfig.model;
    const decoder = model.decoder;
    this.layers = decoder.num_hidden_layers;
    this.kvHeads = decoder.num_key_value_heads;
    this.headSize = decoder.head_size;
    const outputs = Object.entries(decoder.outputs).map(([key, name]) => [`out_${key}`, name]);
    this.names = { ...decoder.inputs, ...Object.fromEntries(outputs) };
    this.contextLength = model.context_length;
    this.eos = new Set([model.eos_token_id].flat());
    const past = session.inputMetadata?.find((m) => m.name === this.kvName('past_key_names', 0));
    this.kvType = past?.type ?? 'float32';
  }

  kvName(kind, layer) {
    return this.names[kind].replace('%d', String(layer));
  }

  /** The conversation rendered with the model's chat template, ready for the assistant's turn. */
  prompt(messages) {
    const config = this.tokenizerConfig;
    const text = this.template.render({
      messages,
      add_generation_prompt: true,
      bos_token: specialToken(config.bos_token),
      eos_token: specialToken(config.eos_token),
      pad_token: specialToken(config.pad_token),
      unk_token: specialToken(config.unk_token),
    });
    return { text, ids: this.tokenizer.encode(text, { add_special_tokens: false }).ids };
  }

  decode(ids) {
    return ids.length ? this.tokenizer.decode(ids, { skip_special_tokens: true }) : '';
  }

  /** The text of an answer token by token (text-stream.mjs): push(id) -> the new text, end() -> the rest. */
  textStream() {
    return new TextStream((ids) => this.decode(ids));
  }

  emptyCache() {
    const feeds = {};
    const dims = [1, this.kvHeads, 0, this.headSize];
    const empty = this.kvType === 'float16' ? new Uint16Array(0) : new Float32Array(0);
    for (let layer = 0; layer < this.layers; layer += 1) {
      feeds[this.kvName('past_key_names', layer)] = new this.ort.Tensor(this.kvType, empty, dims);
      feeds[this.kvName('past_value_names', layer)] = new this.ort.Tensor(this.kvType, empty, dims);
    }
    return feeds;
  }

  /**
   * Generates after promptIds, yielding {id, step} per token. Stops at an
   * end-of-sequence token, after maxTokens, at the model's context length, or when shouldStop() is true.
   * The return value says why: 'eos' | 'max_tokens' | 'context' | 'stopped'.
   */
  async *generate(promptIds, { maxTokens, temperature = 0, topP = 1, random = Math.random, shouldStop = () => false }) {
    const feeds = this.emptyCache();
    try {
      return yield* this.steps(feeds, promptIds, { maxTokens, temperature, topP, random, shouldStop });
    } finally {
      // The last step's cache, which may hold GPU buffers.
      for (const tensor of Object.values(feeds)) tensor.dispose();
    }
  }

  async *steps(feeds, promptIds, { maxTokens, temperature, topP, random, shouldStop }) {
    const { ort } = this;
    const hasPositions = this.names.position_ids && this.session.inputNames.includes(this.names.position_ids);
    let step = promptIds.map(BigInt);
    let total = promptIds.length;
    let answer = 0;
    // The attention mask is all ones: one buffer, doubled when the conversation outgrows it, viewed at each step.
    let ones = new BigInt64Array(0);
    for (;;) {
      if (shouldStop()) return 'stopped';
      if (answer >= maxTokens) return 'max_tokens';
      if (total >= this.contextLength) return 'context';
      if (ones.length < total) ones = new BigInt64Array(Math.min(2 * total, this.contextLength)).fill(1n);
      feeds[this.names.input_ids] = new ort.Tensor('int64', BigInt64Array.from(step), [1, step.length]);
      feeds[this.names.attention_mask] = new ort.Tensor('int64', ones.subarray(0, total), [1, total]);
      if (hasPositions) {
        const positions = BigInt64Array.from({ length: step.length }, (_, i) => BigInt(total - step.length + i));
        feeds[this.names.position_ids] = new ort.Tensor('int64', positions, [1, step.length]);
      }
      const out = await this.session.run(feeds);
      const logits = out[this.names.out_logits];
      const [, rows, vocab] = logits.dims;
      const id = pickToken(logits.data.subarray((rows - 1) * vocab, rows * vocab), { temperature, topP }, random);
      logits.dispose();
      for (let layer = 0; layer < this.layers; layer += 1) {
        for (const [past, present] of CACHE_NAMES) {
          feeds[this.kvName(past, layer)].dispose();
          feeds[this.kvName(past, layer)] = out[this.kvName(present, layer)];
        }
      }
      if (this.eos.has(id)) return 'eos';
      answer += 1;
      yield { id, step: answer };
      step = [BigInt(id)];
      total += 1;
    }
  }

  release() {
    return this.session.release();
  }
}
