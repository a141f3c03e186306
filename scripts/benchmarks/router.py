"""Router overhead and scaling, against paced upstreams (a fixed first-token delay, then one token per interval),
so that what differs between the paths is the router and not a model's noise.

1. Overhead: the same streaming requests through the router and straight to one paced upstream, interleaved
   (request by request at 1 stream; round by round at 64 streams). "64 steady": 64 clients whose first requests
   are spread over one answer's duration, each sending 3 in a row, so that 64 streams are in flight all along;
   "64 at once": 64 requests in the same instant (no target; every request's setup queues behind the others).
   The CPU each process used per token delivered is measured too (/proc; the client is this process), and its
   kernel part. A third path, "splice", is a raw TCP byte copy in Python (_splice.py: uvloop protocols, no HTTP,
   nothing read) between the client and the same upstream: the floor of any relay in Python on this machine (the
   event loop's wake-ups, one read and one write system call per chunk), against which the router's cost is read.
2. Scaling: 1, 2 and 4 paced upstreams behind the router, each capped at 8 streams (UPSTREAM_MAX_CONCURRENCY=8,
   a queue long enough for the rest), under 32 concurrent clients; the aggregate rate is compared with N times
   one upstream's direct rate at 8 streams, measured in the same rounds. "direct N" (8 clients straight to each
   of the N upstreams) is what this machine delivers without the router: its CPUs are shared by every process.

TTFT is the time from sending the request to the first chunk with content. Targets (router issues, the last issue
23): TTFT p50 overhead <= 1 ms at 1 stream, TTFT p95 overhead <= 10 ms at 64 streams, tokens/s >= 0.98x direct,
router CPU per relayed chunk <= 20 us; scaling >= 0.9x N x one upstream. The load average is printed: other
work on the machine skews every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.paced import PACED_MODEL, PacedUpstream, start_paced_upstream
from tests.support.process import free_port, metric_sum, wait_until
from tests.support.router import RouterProcess, start_router

PROMPT = [{"role": "user", "content": "Tell me about local inference on a laptop."}]


@dataclass
class Sample:
    ttft: float  # s, request sent to first content chunk
    tokens: int  # content chunks (the paced upstream sends one token per chunk)
    decode: float  # s, first content chunk to last
    upstream: str  # X-Foundry-Upstream ("" when direct)


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the measured rounds, all streams together
    cpu: Counter = field(default_factory=Counter)  # CPU seconds by process role during the measured rounds

    def ttft(self, q: int) -> float:
        values = [s.ttft for s in self.samples]
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    @property
    def stream_rate(self) -> float:
        """Median decode rate of one stream: tokens after the first over the time they took."""
        return statistics.median((s.tokens - 1) / s.decode for s in self.samples)

    @property
    def aggregate(self) -> float:
        """Tokens delivered per second of wall time, every stream together."""
        return sum(s.tokens for s in self.samples) / self.seconds

    def cpu_per_token(self, role: str) -> float:
        """CPU microseconds that process spent per token delivered."""
        return self.cpu[role] / sum(s.tokens for s in self.samples) * 1e6


def cpu_seconds(pids: dict[str, int]) -> Counter:
    """CPU time (user + system) of each process so far, and of this one (the client) as "client"; the system part
    of each process as "<role> kernel"."""
    tick = os.sysconf("SC_CLK_TCK")
    used = Counter({"client": time.process_time()})
    for role, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[role] = (int(fields[11]) + int(fields[12])) / tick
        used[f"{role} kernel"] = int(fields[12]) / tick
    return used


async def stream(session: aiohttp.ClientSession, base: str, max_tokens: int) -> Sample:
    try:
        return await read_stream(session, base, max_tokens)
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"{base}: {type(exc).__name__}: {exc}") from exc


async def read_stream(session: aiohttp.ClientSession, base: str, max_tokens: int) -> Sample:
    body = {"model": PACED_MODEL, "messages": PROMPT, "max_tokens": max_tokens, "stream": True}
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with session.post(f"{base}/chat/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{base}: HTTP {response.status}: {await response.text()}")
        upstream = response.headers.get("X-Foundry-Upstream", "")
        async for raw in response.content:
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            event = json.loads(raw[6:])
            if "error" in event:
                raise RuntimeError(f"{base}: error event after {tokens} tokens: {event['error']}")
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                last = time.perf_counter()
                first = first or last
                tokens += 1
    if tokens < 2:
        raise RuntimeError(f"{base} streamed {tokens} tokens")
    return Sample(first - started, tokens, last - first, upstream)


async def clients(
    session: aiohttp.ClientSession, bases: list[str], count: int, each: int, max_tokens: int, run: Run,
    pids: dict[str, int] | None = None, stagger: float = 0.0,
) -> None:  # fmt: skip
    """`count` clients, client i on bases[i % len(bases)], each sending `each` requests one after another, the
    clients' first requests spread evenly over `stagger` seconds (0: all at once); the CPU time of the processes
    in `pids` (and of this one) is added to the run's."""

    async def client(i: int) -> None:
        if stagger:
            await asyncio.sleep(i * stagger / count)  # load shaping, not synchronisation
        for _ in range(each):
            run.samples.append(await stream(session, bases[i % len(bases)], max_tokens))

    cpu_before = cpu_seconds(pids or {})
    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(count)))
    run.seconds += time.perf_counter() - started
    run.cpu.update(cpu_seconds(pids or {}) - cpu_before)


def new_session() -> aiohttp.ClientSession:
    # Keep-alive connections, as an SDK keeps them; no cap on connections (64 streams at once). Idle ones are
    # dropped after 3 s, before uvicorn's 5 s keep-alive timeout closes them from its side: reusing a connection
    # the server is closing at that very moment fails the request (a reset or "Server disconnected").
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def overhead(
    paths: dict[str, str], pids: dict[str, dict[str, int]], args: argparse.Namespace
) -> dict[str, dict[str, Run]]:
    """Runs by load ("1", "steady", "burst"), then by path; the paths alternate request by request (one stream)
    or round by round (concurrent streams), each path going first every other time."""
    loads = ("1", "steady", "burst")
    results = {load: {name: Run() for name in paths} for load in loads}
    period = (args.first_token_ms + (args.tokens - 1) * args.token_interval_ms) / 1000  # one answer, unloaded

    def alternate(i: int) -> list[str]:
        return list(paths) if i % 2 == 0 else list(paths)[::-1]

    async with new_session() as session:
        for _ in range(args.warmup):  # not measured: connections, code paths
            for base in paths.values():
                await stream(session, base, args.tokens)
        for i in range(args.requests):
            for name in alternate(i):
                await clients(session, [paths[name]], 1, 1, args.tokens, results["1"][name], pids[name])
        for base in paths.values():  # warm both paths' connection pools to the concurrency measured next
            await clients(session, [base], args.streams, 1, args.tokens, Run())
        for i in range(args.rounds):
            for name in alternate(i):
                # Steady: `streams` in flight all the time, started over one answer's duration, as independent
                # users arrive; then the same number all at once (a thundering herd: every request's setup in
                # the same instant).
                await clients(session, [paths[name]], args.streams, args.steady_requests, args.tokens,
                              results["steady"][name], pids[name], stagger=period)  # fmt: skip
                await clients(session, [paths[name]], args.streams, 1, args.tokens, results["burst"][name], pids[name])
    return results


@dataclass
class Scale:
    n: int
    one_direct: Run = field(default_factory=Run)
    router: Run = field(default_factory=Run)
    direct_n: Run = field(default_factory=Run)


async def scaling(n: int, router: RouterProcess, upstreams: list[PacedUpstream], args: argparse.Namespace) -> Scale:
    cap, per_slot = args.cap, args.per_slot
    each, rest = divmod(cap * n * per_slot, args.clients)
    if rest:
        raise SystemExit(f"--clients {args.clients} must divide --cap x N x --per-slot ({cap} x {n} x {per_slot})")
    result = Scale(n)
    direct = [u.url for u in upstreams[:n]]
    async with new_session() as session:
        # Warm-up, not measured: the router's connections to every upstream, the direct connections.
        await clients(session, [f"{router.url}/v1"], args.clients, 1, args.tokens, Run())
        await clients(session, direct, cap * n, 1, args.tokens, Run())
        for _ in range(args.repeats):
            # One upstream at its cap, direct: the baseline, interleaved with the router for drift.
            await clients(session, direct[:1], cap, per_slot, args.tokens, result.one_direct)
            # The router: as many requests as the N upstreams' slots can take `per_slot` times each.
            await clients(session, [f"{router.url}/v1"], args.clients, each, args.tokens, result.router)
            # The same work straight to the N upstreams, `cap` clients each: this machine without the router.
            await clients(session, direct, cap * n, per_slot, args.tokens, result.direct_n)
    return result


def wait_upstreams_up(router: RouterProcess, n: int) -> None:
    def up() -> bool:
        try:
            text = httpx.get(f"{router.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return False
        return metric_sum(text, "router_upstream_up") >= n

    wait_until(up, 60, f"the router to see {n} paced upstreams up")


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(args: argparse.Namespace, results: dict[str, dict[str, Run]], scales: list[Scale]) -> None:
    names = {"1": "1 stream", "steady": f"{args.streams} steady", "burst": f"{args.streams} at once"}
    print("overhead: router vs direct on one upstream, interleaved")
    print(
        f"{'load':<14}{'path':<8}{'requests':>9}{'TTFT p50':>10}{'TTFT p95':>10}{'tok/s/stream':>14}{'all tok/s':>11}"
    )
    for load, runs in results.items():
        for name, run in runs.items():
            print(
                f"{names[load]:<14}{name:<8}{len(run.samples):>9}{run.ttft(50) * 1000:>8.2f}ms"
                f"{run.ttft(95) * 1000:>8.2f}ms{run.stream_rate:>14.1f}{run.aggregate:>11.0f}"
            )
    roles = ("client", "router", "upstream")
    print(f"{'CPU us per token':<22}" + "".join(f"{role:>10}" for role in roles) + "  (router: the splice's own)")
    for load, runs in results.items():
        for name, run in runs.items():
            cells = "".join(f"{run.cpu_per_token(r):>10.1f}" if r in run.cpu else f"{'-':>10}" for r in roles)
            print(f"{names[load]:<14}{name:<8}{cells}")

    def target(what: str, value: str, goal: str, ok: bool) -> None:
        print(f"{what:<50}{value:>10}   target {goal:<9}{mark(ok)}")

    one, steady, burst = results["1"], results["steady"], results["burst"]
    p50 = (one["router"].ttft(50) - one["direct"].ttft(50)) * 1000
    p95 = (steady["router"].ttft(95) - steady["direct"].ttft(95)) * 1000
    p95_burst = (burst["router"].ttft(95) - burst["direct"].ttft(95)) * 1000
    tps1 = one["router"].stream_rate / one["direct"].stream_rate
    tpsn = steady["router"].aggregate / steady["direct"].aggregate
    target("TTFT p50 overhead, 1 stream", f"{p50:+.2f} ms", "<= 1 ms", p50 <= 1)
    target(f"TTFT p95 overhead, {args.streams} streams steady", f"{p95:+.2f} ms", "<= 10 ms", p95 <= 10)
    print(f"{f'TTFT p95 overhead, {args.streams} streams at once':<50}{p95_burst:>+7.2f} ms   (no target)")
    target("tokens/s router/direct, 1 stream", f"{tps1:.3f}", ">= 0.98", tps1 >= 0.98)
    target(f"tokens/s router/direct, {args.streams} streams steady (all)", f"{tpsn:.3f}", ">= 0.98", tpsn >= 0.98)
    # The relay's own cost: the router's CPU per token relayed at full load (one token per chunk, as paced).
    relay_cpu = steady["router"].cpu_per_token("router")
    target(f"router CPU per relayed chunk, {args.streams} steady", f"{relay_cpu:.1f} us", "<= 20 us", relay_cpu <= 20)
    if "splice" in steady:
        floor, kernel = steady["splice"].cpu_per_token("router"), steady["splice"].cpu_per_token("router kernel")
        ours = steady["router"].cpu_per_token("router kernel")
        print(f"{'  of which in the kernel':<50}{ours:>7.1f} us")
        print(f"{'raw TCP byte copy (splice) per chunk, the floor':<50}{floor:>7.1f} us   (kernel {kernel:.1f} us): "
              f"router / floor {relay_cpu / floor:.2f}")  # fmt: skip
    print()
    print(
        f"scaling: {args.clients} clients, N upstreams capped at {args.cap} streams each (queue "
        f"{args.clients * 2}); baseline: one upstream direct at {args.cap} streams, x N"
    )
    print(
        f"{'N':>2}{'1 direct':>10}{'N x 1':>9}{'router':>9}{'ratio':>7}{'direct N':>10}{'vs it':>7}"
        f"{'TTFT p50':>11}  requests per upstream"
    )
    for s in scales:
        ideal = s.n * s.one_direct.aggregate
        ratio = s.router.aggregate / ideal
        spread = " ".join(str(c) for _, c in sorted(Counter(x.upstream for x in s.router.samples).items()))
        print(
            f"{s.n:>2}{s.one_direct.aggregate:>10.0f}{ideal:>9.0f}{s.router.aggregate:>9.0f}{ratio:>7.3f}"
            f"{s.direct_n.aggregate:>10.0f}{s.router.aggregate / s.direct_n.aggregate:>7.3f}"
            f"{s.router.ttft(50) * 1000:>9.1f}ms  {spread:<14} target >= 0.9  {mark(ratio >= 0.9)}"
        )
    print("(tokens/s of all streams together; the router's TTFT includes the wait in its queue)")


# Over 60 lines: one straight script (start the processes, run the measurements in order, print, stop them);
# split, it would only pass the same handles around.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first-token-ms", type=float, default=20)
    parser.add_argument("--token-interval-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer (max_tokens)")
    parser.add_argument("--requests", type=int, default=40, help="measured requests per path at 1 stream")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams of the p95 measure")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds per path at --streams")
    parser.add_argument("--steady-requests", type=int, default=3, help="requests per client in a steady round")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per path first")
    parser.add_argument("--cap", type=int, default=8, help="UPSTREAM_MAX_CONCURRENCY of the scaling runs")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients of the scaling runs")
    parser.add_argument("--per-slot", type=int, default=4, help="requests per upstream slot in a scaling run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each scaling measure")
    parser.add_argument("--upstreams", default="1,2,4", help="upstream counts of the scaling runs")
    args = parser.parse_args()
    counts = [int(n) for n in args.upstreams.split(",")]
    t_start, load_before = time.perf_counter(), os.getloadavg()[0]

    upstreams: list[PacedUpstream] = []
    routers: list[RouterProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            upstreams = [start_paced_upstream(args.first_token_ms, args.token_interval_ms) for _ in range(max(counts))]
            # Overhead: a cap and a queue far above the load, so that the router only forwards.
            big = str(max(256, args.streams * 2))
            router = start_router(Path(tmp) / "overhead", [upstreams[0].url], UPSTREAM_MAX_CONCURRENCY=big,
                                  UPSTREAM_QUEUE_SIZE=big, ADMISSION="static")  # fmt: skip
            routers.append(router)
            router.wait_ready(60)
            splice_port = free_port()
            upstream_port = str(urlsplit(upstreams[0].url).port)
            splice = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_splice.py")), str(splice_port),
                                       upstream_port])  # fmt: skip
            wait_until(lambda: port_open(splice_port), 30, "the splice relay")
            paths = {"direct": upstreams[0].url, "router": f"{router.url}/v1",
                     "splice": f"http://127.0.0.1:{splice_port}/v1"}  # fmt: skip
            pids = {
                "direct": {"upstream": upstreams[0].proc.pid},
                "router": {"upstream": upstreams[0].proc.pid, "router": router.proc.pid},
                "splice": {"upstream": upstreams[0].proc.pid, "router": splice.pid},
            }
            try:
                results = asyncio.run(overhead(paths, pids, args))
            finally:
                splice.terminate()
                splice.wait(10)
            router.stop()

            scales = []
            for n in counts:
                router = start_router(
                    Path(tmp) / f"scale-{n}", [u.url for u in upstreams[:n]],
                    UPSTREAM_MAX_CONCURRENCY=str(args.cap), UPSTREAM_QUEUE_SIZE=str(args.clients * 2),
                    ADMISSION="static",
                )  # fmt: skip
                routers.append(router)
                router.wait_ready(60)
                wait_upstreams_up(router, n)
                scales.append(asyncio.run(scaling(n, router, upstreams, args)))
                router.stop()
        except BaseException:
            for process in routers:  # what the router said, before its folder goes
                lines = process.log().splitlines()
                warnings = [line for line in lines if '"level": "info"' not in line]
                print(f"--- {process.log_path} (not info, last 20 of {len(lines)} lines)", file=sys.stderr)
                print("\n".join(warnings[-20:]), file=sys.stderr)
            raise
        finally:
            for process in [*routers, *upstreams]:
                with contextlib.suppress(Exception):
                    process.stop()

    print(
        f"router benchmark: paced upstream (first token {args.first_token_ms:g} ms, {args.token_interval_ms:g} "
        f"ms/token, {args.tokens} tokens); {os.cpu_count()} CPUs, load average {load_before:.1f} at the start"
    )
    print()
    report(args, results, scales)
    print(f"total {time.perf_counter() - t_start:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
