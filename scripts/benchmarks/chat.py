"""Chat service overhead: 1, 8 and 32 concurrent sessions x 3 turns, through the chat service (Chainlit's
Socket.IO protocol, as a browser speaks it, and from the chat through the router, as in the stack) and directly
to the same upstream (OpenAI streaming), in one run: the "chat" path's overhead is the chat's and the router's.

Two upstreams: the embedded Foundry Local runtime with the tiny model, and a paced upstream
(tests/support/paced_upstream.py) that emits tokens at a fixed rate, so that what remains is our overhead rather
than the model's noise.

Columns: tok/s is one stream's decode rate as its reader sees it (mean over answers); "all tok/s" is every
session's tokens over the run's wall time. With the tiny model (thousands of tokens a second) the first is
dominated by scheduling and by the chat's coalescing of tokens into one browser update per interval; the
paced upstream is the fair measure of the service's own overhead.

Targets (issue 3): TTFT p50 overhead <= 10 ms at 1 session, TTFT p95 ratio <= 1.2 at 32 sessions,
tokens/s >= 0.95x direct, event-loop lag < 50 ms, idle RSS <= 150 MB.

The history (issue 12): the same sessions against three chat services on the paced upstream, one without history
(CHAT_HISTORY=false), one on SQLite, one on PostgreSQL (Debian's server, as the tests run it), taking turns at each
count. Targets: TTFT p50 overhead of persistence <= 5 ms at 8 sessions, completion time ratio <= 1.05 at 32.
`--history-only` runs just that part.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "chat-app" / "tests")]
from chat_support import ChainlitClient  # noqa: E402

from tests.support.chat import ChatProcess, start_chat  # noqa: E402
from tests.support.paced import PACED_MODEL, start_paced_upstream  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402
from tests.support.process import start_gateway, tiny_model_dir  # noqa: E402

SYSTEM_PROMPT = "You are a helpful assistant. Answer concisely."
QUESTIONS = ["Tell me about local inference.", "Why does it matter?", "Summarise that in one line."]


# -- measurements ---------------------------------------------------------------------------------------------


@dataclass
class Turn:
    ttft: float
    tokens: int
    decode_seconds: float  # first token to last token


@dataclass
class Run:
    turns: list[Turn] = field(default_factory=list)
    seconds: float = 0.0

    def ttft(self, q: int) -> float:
        values = sorted(t.ttft for t in self.turns)
        return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]

    @property
    def throughput(self) -> float:
        """Tokens delivered per second of wall time, all sessions together."""
        return sum(t.tokens for t in self.turns) / self.seconds

    @property
    def tokens_per_second(self) -> float:
        """Mean decode rate of one stream (tokens after the first over the time they took)."""
        rates = [(t.tokens - 1) / t.decode_seconds for t in self.turns if t.tokens > 1 and t.decode_seconds > 0]
        return statistics.fmean(rates) if rates else 0.0


async def direct_session(client: openai.AsyncOpenAI, model: str, max_tokens: int, run: Run) -> None:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        started = time.perf_counter()
        times, text, usage = [], "", 0
        stream = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0.7, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.completion_tokens
                if chunk.choices and chunk.choices[0].delta.content:
                    times.append(time.perf_counter())
                    text += chunk.choices[0].delta.content
        if not times:
            raise RuntimeError("the upstream streamed no tokens")
        run.turns.append(Turn(times[0] - started, usage or len(times), times[-1] - times[0]))
        messages.append({"role": "assistant", "content": text})


async def chat_session(client: ChainlitClient, run: Run) -> None:
    try:
        for question in QUESTIONS:
            reply = await client.ask(question)
            times = reply.token_times()
            if not times:
                raise RuntimeError(f"the chat service streamed no tokens: {reply.texts()}")
            # Tokens arrive coalesced (several per event): count them from the usage the answer reports.
            run.turns.append(Turn(times[0] - reply.sent_at, reply.usage_tokens, times[-1] - times[0]))
    finally:
        await client.close()


async def measure(sessions: int, session) -> Run:
    run = Run()
    started = time.perf_counter()
    await asyncio.gather(*(session(run) for _ in range(sessions)))
    run.seconds = time.perf_counter() - started
    return run


async def measure_chat(sessions: int, chat: ChatProcess) -> tuple[Run, str]:
    """The run, and the worst event-loop lag the service saw during it."""
    # Every browser tab is open before the clock starts: the direct path has no page to open either.
    clients = [ChainlitClient(chat.url) for _ in range(sessions)]
    await asyncio.gather(*(client.connect() for client in clients))
    pending = iter(clients)
    before = lag_buckets(chat)
    run = await measure(sessions, lambda run: chat_session(next(pending), run))
    return run, worst_lag(before, lag_buckets(chat))


def lag_buckets(chat: ChatProcess) -> dict[float, float]:
    buckets = {}
    for line in chat.get("/metrics").text.splitlines():
        if line.startswith("chat_event_loop_lag_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def worst_lag(before: dict[float, float], after: dict[float, float]) -> str:
    """The smallest bucket bound that holds every lag sample taken during the run."""
    total = after[float("inf")] - before.get(float("inf"), 0)
    for bound in sorted(after):
        if after[bound] - before.get(bound, 0) >= total:
            return f"<= {bound * 1000:.0f} ms" if bound != float("inf") else "> 1 s"
    return "?"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def compare(name: str, upstream_url: str, model: str, chat: ChatProcess, max_tokens: int, counts: list[int]):
    direct_client = openai.AsyncOpenAI(base_url=upstream_url, api_key="bench", max_retries=0, timeout=120)
    # Warm-up, not measured: connections, first-request costs on both paths.
    await measure(2, lambda run: direct_session(direct_client, model, max_tokens, run))
    await measure_chat(2, chat)
    print(f"\n== {name} (model {model}, max_tokens {max_tokens}, {len(QUESTIONS)} turns per session)")
    print(
        f"{'sessions':>8} {'path':>6} {'TTFT p50':>9} {'TTFT p95':>9} {'total s':>8} {'tok/s':>8} {'all tok/s':>9} "
        f"| {'p50 +ms':>7} {'p95 x':>6} {'tok/s x':>7} {'all x':>6} {'loop lag':>9}"
    )
    for count in counts:
        direct = await measure(count, lambda run: direct_session(direct_client, model, max_tokens, run))
        via, lag = await measure_chat(count, chat)
        for label, run in (("direct", direct), ("chat", via)):
            print(
                f"{count:>8} {label:>6} {run.ttft(50) * 1000:>7.1f}ms {run.ttft(95) * 1000:>7.1f}ms "
                f"{run.seconds:>8.2f} {run.tokens_per_second:>8.0f} {run.throughput:>9.0f}",
                end="",
            )
            if label == "chat":
                p50 = (via.ttft(50) - direct.ttft(50)) * 1000
                p95 = via.ttft(95) / direct.ttft(95)
                tps = via.tokens_per_second / direct.tokens_per_second
                throughput = via.throughput / direct.throughput
                print(f" | {p50:>+7.1f} {p95:>6.2f} {tps:>7.2f} {throughput:>6.2f} {lag:>9}")
            else:
                print()
    await direct_client.close()


async def compare_history(chats: dict[str, ChatProcess], counts: list[int], rounds: int) -> None:
    """Each count, `rounds` times: every chat in turn (so that drift hits them alike); medians of the rounds."""
    for chat in chats.values():
        await measure_chat(2, chat)  # warm-up: connections, the schema's first pages
    print(f"\n== the history's cost (paced upstream; median of {rounds} rounds of {len(QUESTIONS)} turns per session)")
    print(f"{'sessions':>8} {'history':>10} {'TTFT p50':>9} {'total s':>8} | {'p50 +ms':>7} {'total x':>7}")
    for count in counts:
        runs: dict[str, list[Run]] = {name: [] for name in chats}
        for _ in range(rounds):
            for name, chat in chats.items():
                runs[name].append((await measure_chat(count, chat))[0])
        base_p50 = statistics.median(run.ttft(50) for run in runs["off"])
        base_seconds = statistics.median(run.seconds for run in runs["off"])
        for name, measured in runs.items():
            p50 = statistics.median(run.ttft(50) for run in measured)
            seconds = statistics.median(run.seconds for run in measured)
            print(f"{count:>8} {name:>10} {p50 * 1000:>7.1f}ms {seconds:>8.2f}", end="")
            if name == "off":
                print()
            else:
                print(f" | {(p50 - base_p50) * 1000:>+7.1f} {seconds / base_seconds:>7.3f}")


def run_history(tmp: Path, paced_url: str, max_tokens: int, counts: list[int], rounds: int) -> None:
    postgres = start_postgres(tmp / "postgres")
    chats: dict[str, ChatProcess] = {}
    try:
        databases = {"off": {"CHAT_HISTORY": "false"}, "sqlite": {}, "postgresql": {
            "DATABASE_URL": postgres.create_database("bench")}}  # fmt: skip
        for name, env in databases.items():
            chats[name] = start_chat(
                tmp / f"history-{name}", [paced_url], MAX_TOKENS=str(max_tokens), LOG_LEVEL="warning",
                UPSTREAM_MAX_CONCURRENCY="1024", ADMISSION="static", **env,
            )  # fmt: skip
        for chat in chats.values():
            chat.wait_healthy()
        asyncio.run(compare_history(chats, counts, rounds))
    finally:
        for chat in chats.values():
            chat.stop()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="1,8,32", help="concurrent session counts (default 1,8,32)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--first-token-ms", type=float, default=20.0, help="the paced upstream's time to first token")
    parser.add_argument("--token-interval-ms", type=float, default=10.0, help="the paced upstream's token interval")
    parser.add_argument("--paced-only", action="store_true", help="skip the embedded runtime")
    parser.add_argument("--history-only", action="store_true", help="only the history's cost (no history, SQLite, PG)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the history comparison (default 3)")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    print(f"chat benchmark: sessions {counts}; the chat service, its router and the upstreams run as local processes")
    if args.history_only:
        with tempfile.TemporaryDirectory() as tmp_name:
            paced = start_paced_upstream(args.first_token_ms, args.token_interval_ms)
            try:
                run_history(Path(tmp_name), paced.url, args.max_tokens, counts, args.rounds)
            finally:
                paced.stop()
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paced = start_paced_upstream(args.first_token_ms, args.token_interval_ms)
        paced_url = paced.url
        gateway = start_gateway(tmp / "data", tmp / "gateway.log", FOUNDRY_MODEL_PATH=str(tiny_model_dir()))
        chats: list[ChatProcess] = []
        try:
            model = gateway.wait_for_state({"ready"})["model"]
            for name, url in (("paced", paced_url), ("embedded", f"{gateway.url}/v1")):
                (tmp / name).mkdir()
                # The router's per-upstream limit is a policy for a CPU model (it queues the rest); here the
                # overhead is measured against an unlimited direct path, so a static, huge cap keeps it out of the way.
                chat = start_chat(
                    tmp / name, [url], MAX_TOKENS=str(args.max_tokens), LOG_LEVEL="warning",
                    UPSTREAM_MAX_CONCURRENCY="1024", ADMISSION="static",
                )  # fmt: skip
                chats.append(chat)
                chat.wait_healthy()
            idle = rss_mb(chats[0].proc.pid)
            label = (
                f"paced upstream: first token {args.first_token_ms:.0f} ms, then 1 per {args.token_interval_ms:.0f} ms"
            )
            asyncio.run(compare(label, paced_url, PACED_MODEL, chats[0], args.max_tokens, counts))
            run_history(tmp, paced_url, args.max_tokens, counts, args.rounds)
            if args.paced_only:
                return
            asyncio.run(
                compare("embedded Foundry Local runtime", f"{gateway.url}/v1", model, chats[1], args.max_tokens, counts)
            )
            print(
                f"\nchat service RSS: idle after start {idle:.0f} MB, after the runs {rss_mb(chats[0].proc.pid):.0f} MB"
            )
            if chats[0].router is not None:
                print(f"router RSS after the runs: {rss_mb(chats[0].router.proc.pid):.0f} MB")
        finally:
            for chat in chats:
                chat.stop()
            gateway.stop()
            paced.stop()


if __name__ == "__main__":
    main()
