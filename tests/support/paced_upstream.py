"""A small OpenAI-compatible upstream that streams tokens at a fixed pace, for tests and the benchmark.

Run as a process (`python paced_upstream.py PORT ...`): a fixed time to the first token, then one token
per interval, so that timing differences are ours and not a model's. It can also misbehave on purpose:
fail with an HTTP status before the first token, or drop the connection after N tokens. With --refuse-field NAME
it refuses, as a runtime refuses what it does not support, every chat request that carries the field NAME: an
OpenAI error naming it, with --refuse-status (400 by default; a 5xx that blames the request with
`invalid_request_error` is possible too), or as the error event of a 200 stream with --refuse-in-stream. `GET /stats`
says how many streams started, finished and were cancelled by the client (the stop button's proof), and the most
chat streams it ever ran at once (`peak`).

With --capacity-tokens-per-second X its chat streams share a fixed aggregate throughput, as a CPU runtime's do: each
stream's next token comes after max(token interval, streams running now / X), so N streams each get X/N tokens/s.

Its model has an alias in /v1/models, as the embedded gateway's has. With --completions and --embeddings it also
serves /v1/completions (same pace; text " tok0 tok1 …") and /v1/embeddings (a vector computed from each input
text: [characters, words, vowels], so a test can check it is the answer to its own input).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import struct

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PACED_MODEL = "paced-model"
PACED_ALIAS = "paced"


class DropConnection(Exception):
    """Raised inside the stream: uvicorn then closes the connection without ending the response."""


def create_app(
    first_token_ms: float,
    token_interval_ms: float,
    fail_status: int,
    break_after: int,
    downloading: float | None,
    break_mid_event: bool = False,
    model: str = PACED_MODEL,
    alias: str = PACED_ALIAS,
    serve_completions: bool = False,
    serve_embeddings: bool = False,
    refuse_field: str = "",
    refuse_status: int = 400,
    refuse_in_stream: bool = False,
    capacity_tokens_per_second: float = 0.0,
) -> Starlette:
    stats = {"started": 0, "finished": 0, "cancelled": 0, "peak": 0}
    running = [0]  # chat streams in progress (a list: changed inside the generators)

    def pace() -> float:
        """Seconds until a stream's next token: shared by the running streams when the capacity is fixed."""
        interval = token_interval_ms / 1000
        return max(interval, running[0] / capacity_tokens_per_second) if capacity_tokens_per_second else interval

    async def healthz(request: Request) -> JSONResponse:
        # Only when asked to look like the embedded service while its model downloads.
        body = {"state": "downloading", "message": "Downloading the model.", "download": {"percent": downloading}}
        return JSONResponse(body, status_code=503)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "alias": alias}]})

    async def stats_route(request: Request) -> JSONResponse:
        return JSONResponse(stats)

    def failure() -> JSONResponse:
        error = {"error": {"message": f"paced upstream fails with {fail_status} on purpose", "type": "server_error"}}
        return JSONResponse(error, status_code=fail_status)

    def unknown_model(name: object) -> JSONResponse | None:
        if name == model:
            return None
        error = {"message": f"The model '{name}' does not exist", "type": "invalid_request_error",
                 "param": "model", "code": "model_not_found"}  # fmt: skip
        return JSONResponse({"error": error}, status_code=404)

    def refusal(body: dict) -> Response | None:
        if not refuse_field or refuse_field not in body:
            return None
        error = {"message": f"'{refuse_field}' is not supported by this upstream: send the request without it.",
                 "type": "invalid_request_error", "param": refuse_field, "code": "unsupported_parameter"}  # fmt: skip
        if refuse_in_stream and body.get("stream") is True:
            return Response(f"data: {json.dumps({'error': error})}\n\n", media_type="text/event-stream")
        return JSONResponse({"error": error}, status_code=refuse_status)

    async def completions(request: Request) -> Response:
        body = await request.json()
        if fail_status:
            return failure()
        if refused := refusal(body):
            return refused
        count = int(body.get("max_tokens") or 64)
        prompt_tokens = sum(len(m["content"]) // 4 + 4 for m in body["messages"])

        def event(delta: dict | None, usage: dict | None = None) -> bytes:
            chunk = {
                "id": "paced", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if delta is not None else [],
                "usage": usage,
            }  # fmt: skip
            return f"data: {json.dumps(chunk)}\n\n".encode()

        async def stream():
            stats["started"] += 1
            running[0] += 1
            stats["peak"] = max(stats["peak"], running[0])
            loop = asyncio.get_running_loop()
            due = loop.time() + first_token_ms / 1000
            try:
                yield event({"role": "assistant", "content": ""})
                for i in range(count):
                    if break_after and i == break_after:
                        if break_mid_event:  # as a process killed while it writes: half an event, then nothing
                            yield event({"content": f" tok{i}"})[:40]
                        raise DropConnection
                    # Paced against when each token is due, so that scheduling delays do not add up.
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    yield event({"content": f" tok{i}"})
                    due += pace()
                total = prompt_tokens + count
                yield event(None, {"prompt_tokens": prompt_tokens, "completion_tokens": count, "total_tokens": total})
                yield b"data: [DONE]\n\n"
                stats["finished"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                stats["cancelled"] += 1
                raise
            finally:
                running[0] -= 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def text_completions(request: Request) -> Response:
        body = await request.json()
        if fail_status:
            return failure()
        if refusal := unknown_model(body.get("model")):
            return refusal
        count = int(body.get("max_tokens") or 16)
        usage = {"prompt_tokens": len(str(body.get("prompt"))) // 4 + 1, "completion_tokens": count}
        usage["total_tokens"] = usage["prompt_tokens"] + count

        def completion(text: str, finish: str | None, with_usage: bool = False) -> dict:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            return {"id": "paced-text", "object": "text_completion", "created": 0, "model": model,
                    "choices": [choice], **({"usage": usage} if with_usage else {})}  # fmt: skip

        if body.get("stream") is not True:
            text = "".join(f" tok{i}" for i in range(count))
            await asyncio.sleep((first_token_ms + (count - 1) * token_interval_ms) / 1000)
            return JSONResponse(completion(text, "length", with_usage=True))

        async def stream():
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + (first_token_ms + i * token_interval_ms) / 1000 - loop.time()))
                yield f"data: {json.dumps(completion(f' tok{i}', None))}\n\n".encode()
            yield f"data: {json.dumps(completion('', 'length', with_usage=True))}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        if refusal := unknown_model(body.get("model")):
            return refusal
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            vector = [float(len(text)), float(len(text.split())), float(sum(c in "aeiou" for c in text.lower()))]
            if body.get("encoding_format") == "base64":  # what the openai SDK asks for by default
                packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": packed})
            else:
                data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

    routes = [
        Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/stats", stats_route),
    ]
    if serve_completions:
        routes.append(Route("/v1/completions", text_completions, methods=["POST"]))
    if serve_embeddings:
        routes.append(Route("/v1/embeddings", embeddings, methods=["POST"]))
    if downloading is not None:
        routes.append(Route("/healthz", healthz))
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--first-token-ms", type=float, default=20.0)
    parser.add_argument("--token-interval-ms", type=float, default=10.0)
    parser.add_argument("--fail-status", type=int, default=0, help="answer every chat request with this status")
    parser.add_argument("--break-after", type=int, default=0, help="drop the connection after this many tokens")
    parser.add_argument("--break-mid-event", action="store_true", help="with --break-after: send half an event first")
    parser.add_argument("--downloading", type=float, help="look like the embedded service at this download percent")
    parser.add_argument("--model", default=PACED_MODEL, help="the id of its model")
    parser.add_argument("--alias", default=PACED_ALIAS, help="the alias of its model in /v1/models")
    parser.add_argument("--completions", action="store_true", help="serve POST /v1/completions")
    parser.add_argument("--embeddings", action="store_true", help="serve POST /v1/embeddings")
    parser.add_argument("--refuse-field", default="", help="refuse chat requests that carry this field")
    parser.add_argument("--refuse-status", type=int, default=400, help="the status of that refusal")
    parser.add_argument("--refuse-in-stream", action="store_true", help="refuse a stream in its first event instead")
    parser.add_argument(
        "--capacity-tokens-per-second", type=float, default=0.0,
        help="chat streams share this aggregate throughput, as on a CPU (0: each at its own pace)",
    )  # fmt: skip
    args = parser.parse_args()
    app = create_app(
        args.first_token_ms, args.token_interval_ms, args.fail_status, args.break_after, args.downloading,
        args.break_mid_event, args.model, args.alias, args.completions, args.embeddings, args.refuse_field,
        args.refuse_status, args.refuse_in_stream, args.capacity_tokens_per_second,
    )  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
