// Streams one chat completion with the official OpenAI Node SDK, as any external tool would, and prints
// what it saw as one JSON object on stdout: {text, chunks, usage, headers, model, status, finishReason}.
// Exits non-zero on error.
//
// Usage: node stream.mjs BASE_URL MODEL PROMPT [MAX_TOKENS] [TEMPERATURE]
//   BASE_URL     an OpenAI base URL (…/v1), e.g. the router's
//   PROMPT       the user's message, or a conversation: a JSON array of {role, content} messages
//   TEMPERATURE  sent only when given (0: greedy, the same answer every time)
//   env OPENAI_API_KEY (default "unused")
// Run it from a folder where `npm ci` installed package-lock.json (tests/test_router_clients.py does).
import OpenAI from "openai";

function messagesOf(prompt) {
  if (prompt.trimStart().startsWith("[")) {
    const messages = JSON.parse(prompt);
    if (!Array.isArray(messages) || !messages.every((m) => m && m.role && typeof m.content === "string")) {
      throw new Error("PROMPT: a JSON conversation must be an array of {role, content} messages");
    }
    return messages;
  }
  return [{ role: "user", content: prompt }];
}

async function main() {
  const [baseURL, model, prompt, maxTokens = "24", temperature] = process.argv.slice(2);
  if (!baseURL || !model || !prompt) {
    process.stderr.write("usage: node stream.mjs BASE_URL MODEL PROMPT [MAX_TOKENS] [TEMPERATURE]\n");
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
      messages: messagesOf(prompt),
      max_tokens: Number(maxTokens),
      seed: 1,
      ...(temperature === undefined ? {} : { temperature: Number(temperature) }),
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();

  let text = "";
  let chunks = 0;
  let usage = null;
  let answeredModel = null;
  let finishReason = null;
  for await (const chunk of stream) {
    answeredModel = answeredModel ?? chunk.model ?? null;
    if (chunk.usage) usage = chunk.usage;
    finishReason = chunk.choices?.[0]?.finish_reason ?? finishReason;
    const content = chunk.choices?.[0]?.delta?.content;
    if (content) {
      text += content;
      chunks += 1;
    }
  }
  const headers = Object.fromEntries(response.headers.entries());
  process.stdout.write(
    JSON.stringify({ text, chunks, usage, headers, model: answeredModel, status: response.status, finishReason }) +
      "\n",
  );
}

main().catch((error) => {
  process.stderr.write(`stream.mjs: ${error?.stack ?? error}\n`);
  process.exit(1);
});
