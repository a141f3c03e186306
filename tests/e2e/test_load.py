"""Load through the stack: 64 chat sessions at once, 10 turns each, over Chainlit's Socket.IO protocol, answered by
the host's Foundry Local serving the tiny model: 640 answers in about a minute, where the real model would take many
on two cores (its capacity is measured by `scripts/bench model`, not here).

Zero errors and zero cross-talk are asserted: every answer completes, and every prompt the chat service sent
upstream (LOG_PROMPTS, on in the e2e stack) holds exactly its own session's questions so far, in order — its
own history and nobody else's. Time to first token (p50/p95, measured at the client) and each container's
memory are recorded in test-artifacts/load.json and printed, never asserted: speed is the benchmarks' business.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from chat_support import connected

from tests.e2e.stack import HOST_MODEL, Stack
from tests.support.docker import docker
from tests.support.process import metric_sum

pytestmark = pytest.mark.e2e

SESSIONS = 64
TURNS = 10
MARKER = re.compile(r"^marker (?P<session>s\d+-[0-9a-f]{6}) turn (?P<turn>\d+)$")


async def session(url: str, tag: str, ttfts: list[float], errors: list[str]) -> None:
    async with connected(url) as client:
        await client.change_settings({"model": HOST_MODEL})
        for turn in range(TURNS):
            reply = await client.ask(f"marker {tag} turn {turn}")
            if reply.answered_in_full_by(HOST_MODEL):
                ttfts.append(reply.ttft())
            else:
                errors.append(f"{tag} turn {turn}: {reply.final_text()!r}")


async def run_load(url: str, tags: list[str]) -> tuple[list[float], list[str], float]:
    ttfts: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    results = await asyncio.gather(*(session(url, tag, ttfts, errors) for tag in tags), return_exceptions=True)
    errors += [f"{tag}: {result!r}" for tag, result in zip(tags, results, strict=True) if result is not None]
    return ttfts, errors, time.perf_counter() - started


def prompts_by_session(stack: Stack) -> dict[str, list[list[str]]]:
    """The user messages of every prompt the chat service logged, by Chainlit session id, in order."""
    out = stack.compose("logs", "--no-color", "--no-log-prefix", "chat-app").stdout
    found: dict[str, list[list[str]]] = defaultdict(list)
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "prompt":
            users = [m["content"] for m in event["messages"] if m["role"] == "user"]
            found[event["session_id"]].append(users)
    return found


def memory(stack: Stack) -> dict[str, str]:
    containers = stack.compose("ps", "--quiet").stdout.split()
    stats = docker("stats", "--no-stream", "--format", "{{json .}}", *containers).stdout.splitlines()
    return {row["Name"].removeprefix(f"{stack.project}-"): row["MemUsage"] for row in map(json.loads, stats)}


def test_64_sessions_of_10_turns_without_errors_or_cross_talk(stack: Stack, artifacts: Path) -> None:
    url = stack.url("chat-app")
    stack.wait_chat_ready(HOST_MODEL)
    metrics_before = httpx.get(f"{url}/metrics", timeout=5).text
    tags = [f"s{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(SESSIONS)]

    ttfts, errors, seconds = asyncio.run(run_load(url, tags))

    assert not errors, f"{len(errors)} errors, e.g. {errors[:5]}"
    assert len(ttfts) == SESSIONS * TURNS
    metrics_after = httpx.get(f"{url}/metrics", timeout=5).text
    for outcome in ("failed", "interrupted", "rejected"):
        assert metric_sum(metrics_after, "chat_messages_total", outcome=outcome) == metric_sum(
            metrics_before, "chat_messages_total", outcome=outcome
        ), outcome

    # Every prompt of a session carries that session's questions 0..n in order, and only those.
    ours = {tag: [] for tag in tags}
    for prompts in prompts_by_session(stack).values():
        markers = [MARKER.match(text) for prompt in prompts for text in prompt]
        sessions = {m["session"] for m in markers if m}
        if not sessions & set(tags):
            continue  # another test's session
        assert len(sessions) == 1, f"cross-talk: one session's prompts hold the questions of {sorted(sessions)}"
        [tag] = sessions
        ours[tag] = prompts
    for tag, prompts in ours.items():
        expected = [[f"marker {tag} turn {t}" for t in range(turn + 1)] for turn in range(TURNS)]
        assert prompts == expected, f"{tag}: its prompts do not hold exactly its own history"

    ttfts.sort()
    report = {
        "sessions": SESSIONS,
        "turns_per_session": TURNS,
        "answers": len(ttfts),
        "errors": len(errors),
        "seconds": round(seconds, 1),
        "answers_per_second": round(len(ttfts) / seconds, 1),
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1),
        "ttft_p95_ms": round(ttfts[int(0.95 * (len(ttfts) - 1))] * 1000, 1),
        "memory_after": memory(stack),
    }
    (artifacts / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
