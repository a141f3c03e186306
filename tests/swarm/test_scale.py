"""The chat service scaled and updated under load, through the edge: sessions keep starting (connect, ask, check the
answer, close), as browsers arriving would, while Swarm adds replicas or replaces every task one by one.

No failed message, no failed new session. Time to first token before and after scaling is recorded in
test-artifacts/swarm-scale.json and printed, never asserted: `scripts/bench swarm` compares them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.docker import docker
from tests.support.process import wait_until
from tests.support.swarm import SwarmStack
from tests.support.swarm_load import load_on, p95

pytestmark = pytest.mark.e2e

SESSIONS = 64


def messages_per_replica(swarm: SwarmStack) -> list[float]:
    return [swarm.metric(c, "chat-app", "chat_messages_total") for c in swarm.containers("chat-app")]


def test_scaling_the_chat_from_one_to_three_replicas_under_64_sessions_fails_no_message(
    swarm: SwarmStack, artifacts: Path
) -> None:
    docker("service", "scale", "--detach=false", f"{swarm.service('chat-app')}=1", timeout=300)
    swarm.wait_tasks("chat-app", 1)
    load = load_on(swarm)
    thread = load.run(SESSIONS)
    try:
        load.wait_sessions(2 * SESSIONS)
        before = time.monotonic()
        docker("service", "scale", "--detach=false", f"{swarm.service('chat-app')}=3", timeout=300)
        swarm.wait_tasks("chat-app", 3)
        wait_until(
            lambda: all(count > 0 for count in messages_per_replica(swarm)),
            60,
            "the new replicas taking sessions",
            interval=1,
        )
        scaled = time.monotonic()
        load.wait_sessions(2 * SESSIONS)
    finally:
        load.stop.set()
        thread.join(timeout=120)
    assert not load.failures, load.failures[:5]
    one, three = load.ttfts_between(0, before), load.ttfts_between(scaled, time.monotonic())
    result = {
        "sessions": SESSIONS,
        "one_replica": {"answers": len(one), "ttft_p95_ms": round(p95(one) * 1000, 1)},
        "three_replicas": {"answers": len(three), "ttft_p95_ms": round(p95(three) * 1000, 1)},
    }
    (artifacts / "swarm-scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nswarm scale under {SESSIONS} sessions: {result}")


def drained(container: str) -> list[dict]:
    """What a chat task said as it stopped (foundry_common/server.py), from its container's log (Swarm keeps a few
    past tasks' containers)."""
    logs = docker("logs", container, timeout=30).stdout
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{") and '"event": "drained"' in line]


def test_a_rolling_update_of_the_chat_under_load_fails_no_new_session(swarm: SwarmStack) -> None:
    swarm.wait_tasks("chat-app", 3)
    replaced = swarm.containers("chat-app")
    load = load_on(swarm)
    thread = load.run(16)
    try:
        load.wait_sessions(32)
        # Every task replaced, one at a time, each new one healthy before the old one stops (stack.yaml); each old
        # one fails its health check first, so the edge moves new sessions away, and finishes its answers.
        docker("service", "update", "--detach=false", "--force", swarm.service("chat-app"), timeout=600)
        load.wait_sessions(32)
    finally:
        load.stop.set()
        thread.join(timeout=120)
    assert not load.failures, load.failures[:5]
    update = json.loads(docker("service", "inspect", swarm.service("chat-app")).stdout)[0]["UpdateStatus"]
    assert update["State"] == "completed", update
    swarm.wait_tasks("chat-app", 3)
    # Each replaced task left with nothing in flight: its answers had finished, none was cut at the grace period.
    said = {container: drained(container) for container in replaced}
    assert all([event["in_flight"] for event in events] == [0] for events in said.values()), said
