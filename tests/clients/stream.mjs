// Streams one chat completion with the official OpenAI Node SDK, as any external tool would, and prints
// what it saw as one JSON object on stdout: {text, chunks, usage, headers, model}. Exits non-zero on error.
//
// Usage: node stream.mjs BASE_URL MODEL PROMPT [MAX_TOKENS]
//   BASE_URL   an OpenAI base URL (…/v1), e.g. the router's
//   env OPENAI_API_KEY (default "unused")
// Run it from a folder where `npm ci` installed package-lock.json (tests/test_router_clients.py does).
import OpenAI from "openai";

async function main() {
  const [baseURL, model, prompt, maxTokens = "24"] = process.argv.slice(2);
  if (!baseURL || !model || !prompt) {
    process.stderr.write("usage: node stream.mjs BASE_URL MODEL PROMPT [MAX_TOKENS]\n");
    process.exit(2);
  }
  const client = new OpenAI({
    baseURL,
    apiKey: process.env.OPENAI_API_KEY || "unused",
    maxRetries: 0,
    timeout: 60_000,
  });
  const { data: stream, response } = await client.chat.completions
    .create({
      model,
      messages: [{ role: "user", content: prompt }],
      max_tokens: Number(maxTokens),
      seed: 1,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();

  let text = "";
  let chunks = 0;
  let usage = null;
  let answeredModel = null;
  for await (const chunk of stream) {
    answeredModel = answeredModel ?? chunk.model ?? null;
    if (chunk.usage) usage = chunk.usage;
    const content = chunk.choices?.[0]?.delta?.content;
    if (content) {
      text += content;
      chunks += 1;
    }
  }
  const headers = Object.fromEntries(response.headers.entries());
  process.stdout.write(
    JSON.stringify({ text, chunks, usage, headers, model: answeredModel, status: response.status }) + "\n",
  );
}

main().catch((error) => {
  process.stderr.write(`stream.mjs: ${error?.stack ?? error}\n`);
  process.exit(1);
});
