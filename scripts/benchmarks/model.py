"""The real model (SmolLM2-135M-Instruct, scripts/make-model) under 1, 2, 4 and 8 concurrent streams, on every
path a user takes to it, in one run on one runtime; then the same model in the page.

Servers: one embedded Foundry Local gateway (`python -m foundry_embedded`, FOUNDRY_MODEL_PATH=the model) and, in
front of it, as real local processes:
  direct        the gateway's /v1 itself: the baseline of every ratio
  router        a router with UPSTREAM_MAX_CONCURRENCY=16, so that its cap is not what is measured
  chat          the chat service (Chainlit's Socket.IO protocol, as a browser speaks it) in front of that router
  router cap 4  a router with the default cap (4, the rest queued) at the most streams (8): what users get
Each stream asks one of a fixed set of questions (the chat's default system prompt, greedy: temperature 0, the same
max_tokens on every path), all the streams of a concurrency at once; tokens are counted from the usage the runtime
reports. The configurations take turns in rounds (each going first every other round), so that drift on a shared
machine falls on all of them. TTFT is from sending the question to its first token (for the chat: the first
token the browser would get; for the capped router: its queue included); a chat answer ends with Chainlit's
task_end (its footer shown, the history written, as a user sees it). "all tok/s" is every stream's tokens over
the wall time of the concurrency's runs, the curve the router's cap is read from; "tok/s/stream" is the median
decode rate of one stream (tokens after the first over the time they took).

Recommendation: the router's default cap for a machine like this one, from the direct curve: the smallest
concurrency whose aggregate is within 5% of the peak (--within): more streams at once than that add no throughput,
they only share it, so every answer takes longer.

Page: the chat page (/chat, served by nginx, Debian's Chromium) with the same model on WASM, one answer of
--page-tokens greedy tokens after a first load, against Python ONNX Runtime GenAI (the runtime inside Foundry Local,
tests/browser/chat_reference.py, median of 3 fresh processes) in the same run: TTFT, tokens/s, the same token ids.
The servers are stopped by then. Figures on a machine shared with other work are lower and noisier: the load
average is printed at the start and the end. A default run took 5.5 min on a 2-core machine at a load average of
4-6 (7 min at 5-11).

Usage: scripts/bench model [--streams 1,2,4,8] [--max-tokens N] [--rounds N] [--chat-streams LIST]
                           [--page-tokens N] [--page-threads N] [--within F] [--only servers|page]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "chat-app" / "tests"), str(Path(__file__).resolve().parent)]
from _openai_stream import QUESTIONS, SYSTEM_PROMPT, closing_line, local_services, messages, stream_chat  # noqa: E402
from chat_support import ChainlitClient  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from webgpu import CHAT_PROMPT, GENAI_PYTHON, READY_TIMER, REFERENCE, TIMEOUT_MS, chat_load, chat_turn  # noqa: E402
from webgpu import profile_context as browser_profile  # noqa: E402

from tests.browser.webgpu_site import build_site, serve  # noqa: E402
from tests.support.chat import ChatProcess, start_chat  # noqa: E402
from tests.support.process import CHAT_MODEL_NAME, chat_model_dir, start_gateway  # noqa: E402
from tests.support.router import start_router  # noqa: E402

CAPPED = "router cap 4"  # the router with its default cap, at the largest concurrency only


# -- servers --------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    ttft: float  # s, question sent to first token
    tokens: int  # completion tokens, from the usage the runtime reports
    decode: float  # s, first token to last


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the measured runs, all streams together
    rounds: list[float] = field(default_factory=list)  # aggregate tokens/s of each round

    def ttft(self, q: int) -> float:
        values = [s.ttft for s in self.samples]
        return values[0] if len(values) == 1 else statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    @property
    def stream_rate(self) -> float:
        return statistics.median((s.tokens - 1) / s.decode for s in self.samples if s.tokens > 1 and s.decode > 0)

    @property
    def aggregate(self) -> float:
        return sum(s.tokens for s in self.samples) / self.seconds

    @property
    def answer_seconds(self) -> float:
        """Median time of one whole answer, question sent to last token."""
        return statistics.median(s.ttft + s.decode for s in self.samples)

    @property
    def mean_tokens(self) -> float:
        return statistics.fmean(s.tokens for s in self.samples)

    def add(self, samples: list[Sample], seconds: float) -> None:
        self.samples += samples
        self.seconds += seconds
        self.rounds.append(sum(s.tokens for s in samples) / seconds)


async def openai_stream(session: aiohttp.ClientSession, url: str, model: str, question: str, max_tokens: int) -> Sample:
    body = {
        "model": model, "messages": messages(question), "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    started = time.perf_counter()
    got = await stream_chat(session, url, body)
    return Sample(got.first - started, got.tokens, got.last - got.first)


async def http_streams(session: aiohttp.ClientSession, url: str, model: str, questions: list[str], max_tokens: int):
    started = time.perf_counter()
    samples = await asyncio.gather(*(openai_stream(session, url, model, q, max_tokens) for q in questions))
    return list(samples), time.perf_counter() - started


async def chat_streams(chat: ChatProcess, questions: list[str]) -> tuple[list[Sample], float]:
    """One Chainlit session per question, every one connected (a tab open) before the clock starts."""
    clients = [ChainlitClient(chat.url) for _ in questions]
    try:
        await asyncio.gather(*(client.connect() for client in clients))

        async def ask(client: ChainlitClient, question: str) -> Sample:
            reply = await client.ask(question)
            times = reply.token_times()
            if not times or not reply.usage_tokens:
                raise RuntimeError(f"the chat service gave no tokens or no usage: {reply.texts()}")
            # Tokens arrive coalesced (several per event): their number comes from the usage in the footer.
            return Sample(times[0] - reply.sent_at, reply.usage_tokens, times[-1] - times[0])

        started = time.perf_counter()
        samples = await asyncio.gather(*(ask(c, q) for c, q in zip(clients, questions, strict=True)))
        return list(samples), time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def new_session() -> aiohttp.ClientSession:
    # Keep-alive connections, as an SDK keeps them, dropped before uvicorn's 5 s keep-alive timeout does it.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600))


async def measure_servers(urls: dict[str, str], chat: ChatProcess, model: str, args: argparse.Namespace):
    """Runs by path, then by concurrency; each round every (path, concurrency) once, the paths' order alternating."""
    top = max(args.streams)
    results: dict[str, dict[int, Run]] = {name: {} for name in ("direct", "router", "chat", CAPPED)}
    async with new_session() as session:

        async def run(name: str, questions: list[str]) -> tuple[list[Sample], float]:
            if name == "chat":
                return await chat_streams(chat, questions)
            return await http_streams(session, urls[name], model, questions, args.max_tokens)

        for name in results:  # warm-up, not measured: connections, the first request's costs on each path
            await run(name, QUESTIONS[:1])
        for r in range(args.rounds):
            for count in args.streams:
                questions = [QUESTIONS[(i + r) % len(QUESTIONS)] for i in range(count)]
                names = ["direct", "router"]
                names += ["chat"] if count in args.chat_streams else []
                names += [CAPPED] if count == top else []
                for name in names if r % 2 == 0 else names[::-1]:
                    samples, seconds = await run(name, questions)
                    results[name].setdefault(count, Run()).add(samples, seconds)
                    tokens = sum(s.tokens for s in samples)
                    print(f"  round {r + 1}, {count} streams, {name}: {tokens / seconds:.1f} tok/s", flush=True)
    return results


def start_servers(tmp: Path, args: argparse.Namespace, processes: list) -> tuple[dict[str, str], ChatProcess, str]:
    """The gateway, the two routers and the chat (appended to `processes` as they start): the paths' URLs, the
    chat, the model's id."""
    gateway = start_gateway(tmp / "gateway", tmp / "gateway.log", FOUNDRY_MODEL_PATH=str(chat_model_dir()))
    processes.append(gateway)
    model = gateway.wait_for_state({"ready"}, 180)["model"]
    upstream = f"{gateway.url}/v1"
    # A static cap and a queue above any load measured: the router only forwards (no learned limit in the way).
    free = start_router(tmp / "router", [upstream], ADMISSION="static", UPSTREAM_MAX_CONCURRENCY="16",
                        UPSTREAM_QUEUE_SIZE="64", LOG_LEVEL="warning")  # fmt: skip
    processes.append(free)
    # The static cap of 4 that every release had until admission was measured (scripts/bench capacity compares both).
    capped = start_router(tmp / "router-default", [upstream], ADMISSION="static", UPSTREAM_MAX_CONCURRENCY="4",
                          LOG_LEVEL="warning")  # fmt: skip
    processes.append(capped)
    for router in (free, capped):
        router.wait_ready(60, model=model)
    chat = start_chat(tmp / "chat", [], router=free, MAX_TOKENS=str(args.max_tokens), TEMPERATURE="0",
                      SYSTEM_PROMPT=SYSTEM_PROMPT, MODEL=model, LOG_LEVEL="warning")  # fmt: skip
    processes.append(chat)
    chat.wait_healthy()
    return {"direct": upstream, "router": free.base_url, CAPPED: capped.base_url}, chat, model


def servers(args: argparse.Namespace) -> tuple[dict[str, dict[int, Run]], str]:
    with local_services("model-bench-") as (tmp, processes):
        urls, chat, model = start_servers(tmp, args, processes)
        return asyncio.run(measure_servers(urls, chat, model, args)), model


def recommend(curve: dict[int, Run], within: float) -> tuple[int, int]:
    """(the concurrency where the aggregate peaks, the smallest one within `within` of that peak)."""
    peak = max(curve, key=lambda c: curve[c].aggregate)
    return peak, min(c for c in curve if curve[c].aggregate >= (1 - within) * curve[peak].aggregate)


def report_servers(results: dict[str, dict[int, Run]], model: str, args: argparse.Namespace) -> None:
    top = max(args.streams)
    direct = results["direct"]
    print(
        f"\nservers: {model}, max_tokens {args.max_tokens}, greedy, {args.rounds} rounds (each concurrency's streams "
        f"at once, one question each); TTFT and tok/s/stream over every round's answers; all tok/s over all rounds "
        f"(min-max of the rounds)"
    )
    print(
        f"{'streams':>7} {'path':<13}{'answers':>8}{'tokens':>7}{'TTFT p50':>10}{'TTFT p95':>10}{'tok/s/stream':>13}"
        f"{'all tok/s':>10}{'(rounds)':>12} | {'all x':>6}{'p50 +ms':>9}"
    )
    for count in args.streams:
        for name in ("direct", "router", "chat", CAPPED):
            run = results[name].get(count)
            if run is None:
                continue
            spread = f"({min(run.rounds):.0f}-{max(run.rounds):.0f})"
            line = (
                f"{count:>7} {name:<13}{len(run.samples):>8}{run.mean_tokens:>7.0f}{run.ttft(50) * 1000:>8.0f}ms"
                f"{run.ttft(95) * 1000:>8.0f}ms{run.stream_rate:>13.1f}{run.aggregate:>10.1f}{spread:>12}"
            )
            if name != "direct":
                base = direct[count]
                line += f" | {run.aggregate / base.aggregate:>6.3f}{(run.ttft(50) - base.ttft(50)) * 1000:>+9.0f}"
            print(line)
    print("(all x: all tok/s over direct's at the same streams; p50 +ms: TTFT p50 minus direct's)")

    print("\noverhead ratios by concurrency (all tok/s over direct's; TTFT p50 ratio):")
    chat_counts = [c for c in args.streams if c in results["chat"]]
    print(f"{'streams':>7}{'router/direct':>15}{'chat/direct':>13}{'TTFT router/direct':>20}{'TTFT chat/direct':>18}")
    for count in args.streams:
        base, via = direct[count], results["router"][count]
        chat = results["chat"].get(count)
        cells = (
            f"{via.aggregate / base.aggregate:>15.3f}"
            + (f"{chat.aggregate / base.aggregate:>13.3f}" if chat else f"{'-':>13}")
            + f"{via.ttft(50) / base.ttft(50):>20.3f}"
            + (f"{chat.ttft(50) / base.ttft(50):>18.3f}" if chat else f"{'-':>18}")
        )
        print(f"{count:>7}{cells}")
    if chat_counts != args.streams:
        print(f"(the chat path at {','.join(map(str, chat_counts))} streams only: --chat-streams)")

    capped, free = results[CAPPED][top], results["router"][top]
    print(
        f"\nthe default cap (4) at {top} streams: all tok/s {capped.aggregate:.1f} vs {free.aggregate:.1f} with cap 16 "
        f"(x{capped.aggregate / free.aggregate:.3f}); TTFT p50 {capped.ttft(50) * 1000:.0f} ms vs "
        f"{free.ttft(50) * 1000:.0f} ms, p95 {capped.ttft(95) * 1000:.0f} ms vs {free.ttft(95) * 1000:.0f} ms; "
        f"tok/s/stream {capped.stream_rate:.1f} vs {free.stream_rate:.1f}"
    )

    peak, cap = recommend(direct, args.within)
    router_peak, router_cap = recommend(results["router"], args.within)
    curve = ", ".join(f"{c}: {direct[c].aggregate:.1f}" for c in args.streams)
    print(f"\naggregate tokens/s, direct: {curve}; peak at {peak} streams ({direct[peak].aggregate:.1f} tok/s)")
    print(
        "through the router (cap 16): "
        + ", ".join(f"{c}: {results['router'][c].aggregate:.1f}" for c in args.streams)
        + f"; peak at {router_peak} streams, smallest within {args.within:.0%}: {router_cap}"
    )
    print(f"\nrecommended default UPSTREAM_MAX_CONCURRENCY on a machine like this one: {cap}")
    print(
        f"  why: the aggregate peaks at {peak} streams ({direct[peak].aggregate:.1f} tok/s); {cap} is the smallest "
        f"concurrency within {args.within:.0%} of it ({direct[cap].aggregate:.1f} tok/s)."
    )
    if cap == top:
        print(f"  the aggregate still grows up to {top} streams: measure further (--streams) before trusting {cap}")
    else:
        at_cap, at_top = direct[cap], direct[top]
        wait = (top / cap - 1) * at_cap.answer_seconds + at_cap.ttft(50)
        print(
            f"  beyond {cap}, more streams at once add at most {args.within:.0%} throughput: they share the same "
            f"cores, so every answer slows ({at_cap.stream_rate:.1f} tok/s per stream at {cap}, "
            f"{at_top.stream_rate:.1f} at {top}; an answer of ~{at_cap.mean_tokens:.0f} tokens takes "
            f"{at_cap.answer_seconds:.1f} s at {cap}, {at_top.answer_seconds:.1f} s at {top})."
        )
        print(
            f"  the cost: requests beyond the cap wait in the router's queue; with {top} arriving at once and a cap "
            f"of {cap}, the last waits about {wait:.1f} s for its first token ({top // cap - 1} answers before it), "
            f"against {at_top.ttft(95) * 1000:.0f} ms (p95) with all {top} at once; the same work, so the last "
            f"answer ends about when it would anyway, and the first ones sooner."
        )
    # Rounds whose spread reaches the peak's: at this machine's noise, the curve cannot tell them from the peak.
    close = [c for c in args.streams if c != peak and max(direct[c].rounds) >= min(direct[peak].rounds)]
    if close:
        print(
            f"  noise: the rounds at {', '.join(map(str, close))} streams reach into the peak's "
            f"({min(direct[peak].rounds):.0f}-{max(direct[peak].rounds):.0f} tok/s): more --rounds or a quieter "
            f"machine would separate them"
        )
    four = direct.get(4)
    if four is not None and cap != 4:
        print(
            f"  the current default, 4: {four.aggregate:.1f} tok/s ({four.aggregate / direct[peak].aggregate:.0%} of "
            f"the peak), {four.stream_rate:.1f} tok/s per stream, TTFT p50 {four.ttft(50) * 1000:.0f} ms"
        )


# -- the page -------------------------------------------------------------------------------------------------


def reference_run(tokens: int) -> dict:
    """Python ONNX Runtime GenAI in a fresh process, the page's prompt (no system prompt, as the page sends)."""
    command = [str(GENAI_PYTHON), str(REFERENCE), str(chat_model_dir()), str(tokens)]
    stdin = json.dumps([{"role": "user", "content": CHAT_PROMPT}])
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{REFERENCE.name} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


def page(args: argparse.Namespace) -> tuple[dict, dict]:
    """(the page's answer with its first load, Python GenAI's medians and ids)."""
    runs = [reference_run(args.page_tokens) for _ in range(3)]
    eos = json.loads((chat_model_dir() / "genai_config.json").read_text())["model"]["eos_token_id"]
    ids = runs[0]["answer_ids"]
    if ids and ids[-1] in ([eos] if isinstance(eos, int) else eos):
        ids = ids[:-1]  # GenAI returns the end of sequence; the page does not
    base = {
        "ids": ids,
        "prompt_ids": runs[0]["prompt_ids"],
        "ttft_ms": statistics.median(r["ttft_ms"] for r in runs),
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
    }
    site = build_site()
    threads = f"&threads={args.page_threads}" if args.page_threads else ""
    with tempfile.TemporaryDirectory(prefix="model-bench-models-") as tmp:
        models = Path(tmp) / "models"
        Path(tmp).chmod(0o755)  # nginx's workers read it
        models.mkdir(mode=0o755)
        (models / CHAT_MODEL_NAME).symlink_to(chat_model_dir())
        with (
            serve(site, models=models) as server,
            sync_playwright() as playwright,
            browser_profile(playwright) as context,
        ):
            context.add_init_script(READY_TIMER)
            browser_page = context.new_page()
            # One WASM token takes over a second on this model: the page's main thread is busy meanwhile.
            browser_page.set_default_timeout(TIMEOUT_MS)
            url = f"{server.url}/chat?model={CHAT_MODEL_NAME}&ep=wasm&max_tokens={args.page_tokens}{threads}"
            loaded = chat_load(browser_page, url)
            turn = chat_turn(browser_page, 1)
            turn["ran_on"] = browser_page.text_content("#browser-ran-on") or ""
    return {**turn, "load": loaded}, base


def report_page(turn: dict, base: dict, args: argparse.Namespace) -> None:
    print(
        f"\npage: /chat on WASM ({turn['ran_on']}), one answer of {len(turn['ids'])} tokens (asked "
        f"{args.page_tokens}) after a first load ({turn['load']['ready_ms'] / 1000:.1f} s, "
        f"{turn['load']['bytes'] / 1e6:.0f} MB), vs Python ONNX Runtime GenAI (median of 3 processes), greedy"
    )
    print(f"{'':22}{'WASM page':>12}{'Python GenAI':>14}{'page / Py':>11}")
    for title, key, py in (("time to first token ms", "ttftMs", "ttft_ms"), ("tokens/s", "tokensPerSecond",
                                                                               "tokens_per_second")):  # fmt: skip
        print(f"{title:22}{turn[key]:>12.2f}{base[py]:>14.2f}{turn[key] / base[py]:>10.3f}x")
    prompt = "yes" if turn["promptIds"] == base["prompt_ids"] else "NO: the page's chat template differs"
    print(f"{'same prompt ids':22}{prompt:>12} ({len(base['prompt_ids'])} tokens)")
    if turn["ids"] == base["ids"]:
        print(f"{'same answer ids':22}{'yes':>12}")
    else:
        at = next((i for i, (a, b) in enumerate(zip(turn["ids"], base["ids"], strict=False)) if a != b), None)
        at = min(len(turn["ids"]), len(base["ids"])) if at is None else at
        print(
            f"{'same answer ids':22}{'NO':>12} (the same first {at}, then page {turn['ids'][at : at + 4]}, Python "
            f"{base['ids'][at : at + 4]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,2,4,8", help="concurrent streams (default 1,2,4,8)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens of every answer (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration, in turns (default 3)")
    parser.add_argument("--chat-streams", help="the chat path's concurrencies (default: --streams)")
    parser.add_argument("--within", type=float, default=0.05, help="the recommendation's margin to the peak (0.05)")
    parser.add_argument("--page-tokens", type=int, default=32, help="new tokens of the page's answer (default 32: "
                        "about 0.7 tokens/s on WASM here)")  # fmt: skip
    parser.add_argument("--page-threads", type=int, help="WASM threads (default: ONNX Runtime Web's, half the cores)")
    parser.add_argument("--only", choices=("servers", "page"), help="one part only")
    args = parser.parse_args()
    args.streams = sorted({int(n) for n in args.streams.split(",")})
    args.chat_streams = sorted({int(n) for n in (args.chat_streams or ",".join(map(str, args.streams))).split(",")})
    started, load_before = time.perf_counter(), os.getloadavg()
    print(f"model benchmark: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} at the start", flush=True)
    results = servers(args) if args.only != "page" else None
    page_results = page(args) if args.only != "servers" else None
    if results:
        report_servers(*results, args)
    if page_results:
        report_page(*page_results, args)
    print(closing_line(started, load_before))


if __name__ == "__main__":
    main()
