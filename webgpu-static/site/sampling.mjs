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
 * Sorting the whole vocabulary costs a few ms for 150k tokens: cheap next to a decoding step.
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
  const order = Array.from(weights.keys()).sort((a, b) => weights[b] - weights[a] || a - b);
  const keep = [];
  let kept = 0;
  for (const id of order) {
    keep.push(id);
    kept += weights[id];
    if (kept >= topP * sum) break;
  }
  let draw = random() * kept;
  for (const id of keep) {
    draw -= weights[id];
    if (draw < 0) return id;
  }
  return keep[keep.length - 1];
}
