"""Gateway overhead: the same streaming requests through the gateway and straight to the runtime's own
web service, interleaved in one run against one runtime, so that the ratios compare like with like.

Targets (issue 2): TTFT p50 overhead <= 2 ms, tokens/s >= 0.97x direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.process import start_gateway, tiny_model_dir

PROMPT = [{"role": "user", "content": "Tell me about local inference on a laptop."}]


async def one(client: httpx.AsyncClient, url: str, model: str, max_tokens: int) -> tuple[float, float]:
    """(time to first token in s, output tokens per second after the first) of one streaming request."""
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "stream": True, "seed": 3}
    started = time.perf_counter()
    first = last = None
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                last = time.perf_counter()
                first = first or last
                tokens += 1
    if first is None or tokens < 2:
        raise RuntimeError(f"{url} produced {tokens} tokens")
    return first - started, (tokens - 1) / (last - first)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(paths: dict[str, str], model: str, requests: int, max_tokens: int, results: dict) -> None:
    # The same async client as the gateway's own hop, so both paths see the same client behaviour.
    # A fresh connection per request on both paths: on a reused connection the runtime's own web
    # service holds its first chunk back ~40 ms (Nagle vs delayed ACK), which would flatter the gateway.
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(5):  # warm-up, not measured
            for url in paths.values():
                await one(client, url, model, max_tokens)
        for _ in range(requests):
            for name, url in paths.items():  # interleaved: drift hits both paths alike
                ttft, tps = await one(client, url, model, max_tokens)
                results[name]["ttft"].append(ttft)
                results[name]["tps"].append(tps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60, help="measured requests per path (default 60)")
    parser.add_argument("--max-tokens", type=int, default=512, help="long enough to measure generation speed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        service = start_gateway(Path(tmp) / "data", Path(tmp) / "gateway.log", FOUNDRY_MODEL_PATH=str(tiny_model_dir()))
        try:
            model = service.wait_for_state({"ready"})["model"]
            paths = {
                "direct": f"{service.runtime_url}/catalogs/local/v1/chat/completions",
                "gateway": f"{service.url}/v1/chat/completions",
            }
            results: dict[str, dict[str, list[float]]] = {p: {"ttft": [], "tps": []} for p in paths}
            asyncio.run(measure(paths, model, args.requests, args.max_tokens, results))
        finally:
            service.stop()

    print(f"gateway benchmark: {args.requests} streaming requests per path, max_tokens={args.max_tokens}")
    print(f"model: {model}")
    print(f"{'path':<10}{'TTFT p50 ms':>14}{'TTFT p95 ms':>14}{'tokens/s p50':>15}")
    for name, r in results.items():
        print(
            f"{name:<10}{percentile(r['ttft'], 50) * 1000:>14.2f}{percentile(r['ttft'], 95) * 1000:>14.2f}"
            f"{statistics.median(r['tps']):>15.0f}"
        )
    d, g = results["direct"], results["gateway"]
    overhead = (percentile(g["ttft"], 50) - percentile(d["ttft"], 50)) * 1000
    p95_ratio = percentile(g["ttft"], 95) / percentile(d["ttft"], 95)
    tps_ratio = statistics.median(g["tps"]) / statistics.median(d["tps"])
    print(f"TTFT p50 overhead: {overhead:+.2f} ms (target <= 2 ms)")
    print(f"TTFT p95 ratio gateway/direct: {p95_ratio:.3f}")
    print(f"tokens/s ratio gateway/direct: {tps_ratio:.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
