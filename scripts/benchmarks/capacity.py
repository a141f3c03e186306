"""Many users on one CPU (issue 24): the real model behind the router, with admission from measured capacity and with
today's static cap, under 1 to 32 users who each ask, read the answer, think, and ask again.

Servers, as real local processes: one embedded Foundry Local gateway (`python -m foundry_embedded`, the real runtime,
FOUNDRY_MODEL_PATH=the model of scripts/make-model; FOUNDRY_ENGINE from --engine when the gateway has that setting)
and two routers in front of it:
  static     ADMISSION=static, UPSTREAM_MAX_CONCURRENCY=4: the baseline (the cap every release had until now)
  measured   the router's defaults (admission from measured capacity, the static cap only an upper bound)
Users: each of N users streams one question (greedy, --max-tokens), reads it to the end, thinks --think seconds,
asks again, for --seconds; the two routers take turns at each N (each going first every other N). A 429 counts as a
refusal (its time to the answer is reported: the excess should get it fast); a stream that waited in the router's
queue shows its place in SSE comments (counted). Per N: TTFT p50/p95/max of the answers, each stream's decode rate
p5 (tokens after the first over the time they took), aggregate tokens/s (every answer's tokens over the wall time),
429s and their p95 time, streams that were shown their place.

Then the concurrency curve through the measured router: 1 and 8 streams at once, no thinking: aggregate tokens/s at
8 over 1's (target >= 1.6; the runtime shares one throughput, so about 1 without batching).

Targets (issue 24, this 2-core machine): at 8 users TTFT p95 <= 1.5 s with every stream's rate above the floor;
at 32 users no TTFT above 10 s (the excess gets a fast 429 or shows its place); aggregate at 8 streams >= 1.6 x one.
The load average is printed at the start and the end: other work on the machine lowers every figure.

Usage: scripts/bench capacity [--users 1,4,8,16,32] [--seconds S] [--think S] [--max-tokens N] [--floor TPS]
                              [--engine NAME] [--only users|curve]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]
from _openai_stream import QUESTIONS, closing_line, local_services, messages  # noqa: E402

from foundry_common.protocol import queue_place  # noqa: E402
from tests.support.process import chat_model_dir, start_gateway  # noqa: E402
from tests.support.router import start_router  # noqa: E402

CONFIGS = ("static", "measured")


@dataclass
class Answer:
    ttft: float  # s, question sent to first token
    tokens: int  # completion tokens (usage)
    decode: float  # s, first token to last
    placed: bool  # the router showed it its place in the queue


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    refusals: list[float] = field(default_factory=list)  # s, question sent to the 429
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ttft(self, q: int) -> float:
        values = sorted(a.ttft for a in self.answers)
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    def rate_p5(self) -> float:
        rates = [(a.tokens - 1) / a.decode for a in self.answers if a.tokens > 1 and a.decode > 0]
        if len(rates) < 2:
            return rates[0] if rates else float("nan")
        return statistics.quantiles(rates, n=100, method="inclusive")[4]

    @property
    def aggregate(self) -> float:
        return sum(a.tokens for a in self.answers) / self.seconds if self.seconds else 0.0


async def ask(session: aiohttp.ClientSession, url: str, model: str, question: str, max_tokens: int,
              load: Load) -> None:  # fmt: skip
    body = {
        "model": model, "messages": messages(question), "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    started = time.perf_counter()
    first = last = 0.0
    usage, placed = 0, False
    async with session.post(f"{url}/chat/completions", json=body) as response:
        if response.status == 429:
            await response.read()
            load.refusals.append(time.perf_counter() - started)
            return
        if response.status != 200:
            load.errors.append(f"HTTP {response.status}: {(await response.text())[:200]}")
            return
        async for raw in response.content:
            if queue_place(raw.rstrip(b"\r\n")) is not None:
                placed = True
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            event = json.loads(raw[6:])
            if "error" in event:
                load.errors.append(f"error event: {event['error'].get('message', event['error'])}"[:200])
                return
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                last = time.perf_counter()
                first = first or last
    if not first or not usage:
        load.errors.append("an answer without tokens or usage")
        return
    load.answers.append(Answer(first - started, usage, last - first, placed))


async def users(session: aiohttp.ClientSession, url: str, model: str, count: int, args: argparse.Namespace) -> Load:
    """`count` users for --seconds: ask, read, think, again. The first questions are spread over one think time,
    as people arrive; a user's last question starts before the end and is read to its end."""
    load = Load()
    deadline = time.perf_counter() + args.seconds

    async def user(i: int) -> None:
        await asyncio.sleep(i * args.think / count)  # arrivals spread: load shaping, not synchronisation
        asked = 0
        while time.perf_counter() < deadline:
            await ask(session, url, model, QUESTIONS[(i + asked) % len(QUESTIONS)], args.max_tokens, load)
            asked += 1
            await asyncio.sleep(args.think)  # the user reads and thinks: load shaping

    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(count)))
    load.seconds = time.perf_counter() - started
    return load


async def at_once(session: aiohttp.ClientSession, url: str, model: str, count: int, args: argparse.Namespace) -> Load:
    load = Load()
    started = time.perf_counter()
    await asyncio.gather(*(ask(session, url, model, QUESTIONS[i % len(QUESTIONS)], args.max_tokens, load)
                           for i in range(count)))  # fmt: skip
    load.seconds = time.perf_counter() - started
    return load


def new_session() -> aiohttp.ClientSession:
    # Keep-alive connections, as an SDK keeps them, dropped before uvicorn's 5 s keep-alive timeout does it.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600))


async def measure(urls: dict[str, str], model: str, args: argparse.Namespace) -> tuple[dict, list[Load]]:
    results: dict[str, dict[int, Load]] = {name: {} for name in CONFIGS}
    curve: list[Load] = []
    async with new_session() as session:
        for url in urls.values():  # warm-up, not measured
            await at_once(session, url, model, 1, args)
        if args.only != "curve":
            for n, count in enumerate(args.users):
                for name in CONFIGS if n % 2 == 0 else CONFIGS[::-1]:
                    load = results[name][count] = await users(session, urls[name], model, count, args)
                    print(f"  {count} users, {name}: {len(load.answers)} answers, {len(load.refusals)} 429s, "
                          f"TTFT p95 {load.ttft(95):.2f} s, {load.aggregate:.1f} tok/s", flush=True)  # fmt: skip
        if args.only != "users":
            for count in (1, 8):
                curve.append(await at_once(session, urls["measured"], model, count, args))
    return results, curve


def start_servers(tmp: Path, args: argparse.Namespace, processes: list) -> tuple[dict[str, str], str]:
    env = {"FOUNDRY_ENGINE": args.engine} if args.engine else {}
    gateway = start_gateway(tmp / "gateway", tmp / "gateway.log", FOUNDRY_MODEL_PATH=str(chat_model_dir()), **env)
    processes.append(gateway)
    model = gateway.wait_for_state({"ready"}, 300)["model"]
    upstream = f"{gateway.url}/v1"
    static = start_router(tmp / "static", [upstream], ADMISSION="static", UPSTREAM_MAX_CONCURRENCY="4",
                          LOG_LEVEL="warning")  # fmt: skip
    processes.append(static)
    measured_env = {"STREAM_RATE_FLOOR_TOKENS_PER_SECOND": str(args.floor)} if args.floor else {}
    measured = start_router(tmp / "measured", [upstream], LOG_LEVEL="warning", **measured_env)
    processes.append(measured)
    for router in (static, measured):
        router.wait_ready(60, model=model)
    return {"static": static.base_url, "measured": measured.base_url}, model


def run(args: argparse.Namespace) -> tuple[dict, list[Load], str, dict]:
    with local_services("capacity-bench-") as (tmp, processes):
        urls, model = start_servers(tmp, args, processes)
        results, curve = asyncio.run(measure(urls, model, args))
        readyz = json.loads(processes[-1].get("/readyz").text)  # what the measured router learned
        return results, curve, model, readyz


def report(results: dict, curve: list[Load], model: str, readyz: dict, args: argparse.Namespace) -> None:
    print(f"\n{model}, max_tokens {args.max_tokens}, greedy; users think {args.think:g} s; {args.seconds:g} s per load")
    if results["static"]:
        print(f"{'users':>5} {'router':<9}{'answers':>8}{'TTFT p50':>10}{'TTFT p95':>10}{'TTFT max':>10}"
              f"{'rate p5':>9}{'all tok/s':>10}{'429s':>6}{'429 p95':>9}{'placed':>7}{'errors':>7}")  # fmt: skip
        for count in args.users:
            for name in CONFIGS:
                load = results[name][count]
                refused = f"{statistics.quantiles(load.refusals, n=20)[-1]:.2f}s" if len(load.refusals) > 1 else "-"
                placed = sum(a.placed for a in load.answers)
                print(f"{count:>5} {name:<9}{len(load.answers):>8}{load.ttft(50):>9.2f}s{load.ttft(95):>9.2f}s"
                      f"{max((a.ttft for a in load.answers), default=float('nan')):>9.2f}s{load.rate_p5():>9.1f}"
                      f"{load.aggregate:>10.1f}{len(load.refusals):>6}{refused:>9}{placed:>7}"
                      f"{len(load.errors):>7}")  # fmt: skip
        for name in CONFIGS:
            for count in args.users:
                for error in sorted(set(results[name][count].errors))[:3]:
                    print(f"  {name}, {count} users: {error}")
    for upstream in readyz.get("upstreams", []):
        learned = {k: upstream.get(k) for k in ("concurrency_limit", "stream_rate_floor", "max_concurrency")}
        print(f"measured router, {upstream.get('name')}: {learned}")
    if curve:
        one, eight = curve
        print(f"\nthrough the measured router, at once: 1 stream {one.aggregate:.1f} tok/s, 8 streams "
              f"{eight.aggregate:.1f} tok/s: x{eight.aggregate / one.aggregate:.2f} (target >= 1.6)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="1,4,8,16,32", help="concurrent users (default 1,4,8,16,32)")
    parser.add_argument("--seconds", type=float, default=45, help="time each load runs (default 45)")
    parser.add_argument("--think", type=float, default=5, help="a user's pause between answers (default 5 s)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens of every answer (default 128)")
    parser.add_argument("--floor", type=float, help="the measured router's STREAM_RATE_FLOOR_TOKENS_PER_SECOND")
    parser.add_argument("--engine", help="the gateway's FOUNDRY_ENGINE (default: its own default)")
    parser.add_argument("--only", choices=("users", "curve"), help="one part only")
    args = parser.parse_args()
    args.users = sorted({int(n) for n in args.users.split(",")})
    started, load_before = time.perf_counter(), os.getloadavg()
    print(f"capacity benchmark: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} at the start", flush=True)
    report(*run(args), args)
    print(closing_line(started, load_before))


if __name__ == "__main__":
    main()
