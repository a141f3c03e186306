"""Benchmark: the chat service on Docker Swarm with one replica, then three, under the same load.

Deploys the offline Swarm stack with scripts/swarm-up (a Docker engine is needed; a single-node swarm is started
when there is none, and left again), then for each replica count starts SESSIONS sessions in a loop through the
edge (connect, ask, check the answer, close: tests/support/swarm_load.py), lets every worker finish one session,
and measures the time to first token of the next ANSWERS answers; ROUNDS times, one and three replicas in turn, so
that drift on the machine falls on both. Prints p50/p95 of each count's pooled answers and the ratio three/one
(below 1: three replicas answer sooner). On one node the replicas share its cores with the model, PostgreSQL and
this load generator: on a 2-core machine every core is busy at 64 back-to-back sessions with one replica already
(one chat replica uses about 0.7 of a core there), so more replicas can only add their own overhead. So by default
each session's user waits 10 s before the next session (`--think`), as people reading answers do: a pace the
machine keeps up with, where the ratio shows what the replicas change. On this 2-core machine (3 rounds):
64 sessions at 10 s, p95 325 ms with one replica and 207 ms with three (×0.64, p50 ×0.54); back to back
(`--think 0`), three replicas are slower (p95 ×1.79), since they only add their own overhead to busy cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "chat-app" / "tests")]
from tests.e2e.stack import EMBEDDED_MODEL  # noqa: E402
from tests.support.docker import docker  # noqa: E402
from tests.support.process import tiny_model_dir  # noqa: E402
from tests.support.swarm import SwarmStack  # noqa: E402
from tests.support.swarm_load import load_on, p95  # noqa: E402


def measure(stack: SwarmStack, replicas: int, sessions: int, answers: int, think: float) -> list[float]:
    docker("service", "scale", "--detach=false", f"{stack.service('chat-app')}={replicas}", timeout=300)
    stack.wait_tasks("chat-app", replicas)
    load = load_on(stack, think)
    thread = load.run(sessions)
    try:
        load.wait_sessions(sessions)  # warm-up: every worker has had a session
        start = time.monotonic()
        load.wait_sessions(answers)
        end = time.monotonic()
    finally:
        load.stop.set()
        thread.join(timeout=120)
    if load.failures:
        raise SystemExit(f"{len(load.failures)} sessions failed, e.g. {load.failures[0]}")
    return load.ttfts_between(start, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=64, help="concurrent sessions (default 64)")
    parser.add_argument("--answers", type=int, default=256, help="answers measured per round (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one, then three replicas (default 3)")
    parser.add_argument(
        "--think",
        type=float,
        default=10.0,
        help="seconds each session's user waits before starting the next (default 10, a person reading the "
        "answer; 0: back to back, as fast as answers come)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = SwarmStack.create(
            f"fs-bench-{uuid.uuid4().hex[:6]}",
            Path(tmp) / "secrets",
            TINY_MODEL_DIR=str(tiny_model_dir()),
            MODEL=EMBEDDED_MODEL,
            MAX_TOKENS="24",
        )
        print("deploying the offline Swarm stack (scripts/swarm-up --offline) ...", flush=True)
        stack.up()
        try:
            results: dict[int, list[float]] = {1: [], 3: []}
            for _ in range(args.rounds):
                for replicas in results:
                    results[replicas] += measure(stack, replicas, args.sessions, args.answers, args.think)
        finally:
            stack.down()
    pace = f"{args.think:g} s between a session's end and the next" if args.think else "back to back"
    print(f"\nchat on Swarm, {args.sessions} sessions ({pace}), {args.rounds} rounds, time to first token (ms):")
    print(f"{'replicas':>9} {'answers':>8} {'p50':>8} {'p95':>8}")
    for replicas, ttfts in results.items():
        print(f"{replicas:>9} {len(ttfts):>8} {statistics.median(ttfts) * 1000:>8.1f} {p95(ttfts) * 1000:>8.1f}")
    print(f"ratio three/one: p50 ×{statistics.median(results[3]) / statistics.median(results[1]):.3f}, "
          f"p95 ×{p95(results[3]) / p95(results[1]):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
