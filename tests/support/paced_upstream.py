"""A small OpenAI-compatible upstream that streams tokens at a fixed pace, for tests and the benchmark.

Run as a process (`python paced_upstream.py PORT ...`): a fixed time to the first token, then one token
per interval, so that timing differences are ours and not a model's. It can also misbehave on purpose:
fail with an HTTP status before the first token, or drop the connection after N tokens. `GET /stats`
says how many streams started, finished and were cancelled by the client (the stop button's proof).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PACED_MODEL = "paced-model"


class DropConnection(Exception):
    """Raised inside the stream: uvicorn then closes the connection without ending the response."""


def create_app(
    first_token_ms: float,
    token_interval_ms: float,
    fail_status: int,
    break_after: int,
    downloading: float | None,
    break_mid_event: bool = False,
) -> Starlette:
    stats = {"started": 0, "finished": 0, "cancelled": 0}

    async def healthz(request: Request) -> JSONResponse:
        # Only when asked to look like the embedded service while its model downloads.
        body = {"state": "downloading", "message": "Downloading the model.", "download": {"percent": downloading}}
        return JSONResponse(body, status_code=503)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": PACED_MODEL, "object": "model"}]})

    async def stats_route(request: Request) -> JSONResponse:
        return JSONResponse(stats)

    async def completions(request: Request) -> Response:
        body = await request.json()
        if fail_status:
            error = {
                "error": {"message": f"paced upstream fails with {fail_status} on purpose", "type": "server_error"}
            }
            return JSONResponse(error, status_code=fail_status)
        count = int(body.get("max_tokens") or 64)
        prompt_tokens = sum(len(m["content"]) // 4 + 4 for m in body["messages"])

        def event(delta: dict | None, usage: dict | None = None) -> bytes:
            chunk = {
                "id": "paced", "object": "chat.completion.chunk", "created": 0, "model": PACED_MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if delta is not None else [],
                "usage": usage,
            }  # fmt: skip
            return f"data: {json.dumps(chunk)}\n\n".encode()

        async def stream():
            stats["started"] += 1
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                yield event({"role": "assistant", "content": ""})
                for i in range(count):
                    if break_after and i == break_after:
                        if break_mid_event:  # as a process killed while it writes: half an event, then nothing
                            yield event({"content": f" tok{i}"})[:40]
                        raise DropConnection
                    # Paced against the start time, so that scheduling delays do not add up.
                    await asyncio.sleep(max(0.0, start + (first_token_ms + i * token_interval_ms) / 1000 - loop.time()))
                    yield event({"content": f" tok{i}"})
                total = prompt_tokens + count
                yield event(None, {"prompt_tokens": prompt_tokens, "completion_tokens": count, "total_tokens": total})
                yield b"data: [DONE]\n\n"
                stats["finished"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                stats["cancelled"] += 1
                raise

        return StreamingResponse(stream(), media_type="text/event-stream")

    routes = [
        Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/stats", stats_route),
    ]
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
    args = parser.parse_args()
    app = create_app(
        args.first_token_ms, args.token_interval_ms, args.fail_status, args.break_after, args.downloading,
        args.break_mid_event,
    )  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
