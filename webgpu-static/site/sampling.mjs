// Choosing the next token from the model's logits. Pure functions: the page, the tests and the benchmark all
// go through pickToken, so greedy decoding here is exactly numpy's argmax (the first of equal maxima), which is
// what ONNX Runtime GenAI does.

/** Index of the largest value; the first one when several are equal (like numpy.argmax). */
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i += 1) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * The next token id. Greedy when temperature is 0; otherwise softmax(logits / temperature), kept to the
 * smallest set of most likely tokens whose probabilities reach topP (nucleus sampling), drawn with random().
 * Only a nucleus needs the vocabulary sorted (a few ms for 150k tokens): at topP 1 every token is kept, and the
 * draw walks them in id order, which gives each the same probability.
 */
export function pickToken(logits, { temperature = 0, topP = 1 } = {}, random = Math.random) {
  if (!(temperature > 0)) return argmax(logits);
  const top = argmax(logits);
  const weights = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i += 1) {
    weights[i] = Math.exp((logits[i] - logits[top]) / temperature);
    sum += weights[i];
  }
  if (topP >= 1) return draw(weights, weights.keys(), sum, random);
  const order = Array.from(weights.keys()).sort((a, b) => weights[b] - weights[a] || a - b);
  const keep = [];
  let kept = 0;
  for (const id of order) {
    keep.push(id);
    kept += weights[id];
    if (kept >= topP * sum) break;
  }
  return draw(weights, keep, kept, random);
}

/** One of ids, each with probability weights[id] / total (their sum); if rounding leaves a remainder, the last
 * one with a weight (a token whose weight underflowed to 0 is never drawn). */
function draw(weights, ids, total, random) {
  let left = random() * total;
  let last = 0;
  for (const id of ids) {
    left -= weights[id];
    if (left < 0) return id;
    if (weights[id] > 0) last = id;
  }
  return last;
}
