"""Replicas killed under a conversation: a chat replica (the browser moves to another and the thread resumes from
PostgreSQL), a router replica mid-stream (the partial answer is kept and marked; the next message works), a model
task (the routers leave it within a probe interval and use it again once Swarm has replaced it).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from chat_support import ChainlitClient, Reply, login
from playwright.sync_api import Page, expect
from test_chat_history_browser import ask, chromium_page, finished_answers

from tests.e2e.stack import SWARM_MODEL
from tests.support.docker import docker, throttled
from tests.support.process import ready_gateway, wait_until
from tests.support.swarm import (
    PROBE_INTERVAL_SECONDS,
    SwarmStack,
    every_router_serves_from,
    log_in,
    upstreams_serving,
    where_answered,
)

pytestmark = pytest.mark.e2e

# Socket.IO's event frames over the page's WebSocket: `42["name", data]`.
EVENT_FRAME = re.compile(r"^42(\[.*\])$", re.DOTALL)
# Nearly the tiny model's whole context, at a tenth of a CPU: seconds of streaming (tests/e2e/test_faults.py).
LONG_ANSWER = {"model": SWARM_MODEL, "max_tokens": 3968}
SLOW_CPUS = 0.1


def healthy(container: str) -> bool:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip() == "healthy"


def serving_replica(swarm: SwarmStack, service: str, metric: str) -> str:
    """The one container of the service whose `metric` (summed) is above zero. Only healthy ones are asked: Swarm's
    replacement of a killed task may still be starting, its port not open yet."""
    busy = [c for c in swarm.containers(service) if healthy(c) and swarm.metric(c, service, metric) > 0]
    assert len(busy) == 1, f"one {service} replica with {metric} > 0, not {busy}"
    return busy[0]


def resumed_threads(page: Page) -> list[dict]:
    """Every thread the server sent to the page with `resume_thread` (on each Socket.IO connection)."""
    threads: list[dict] = []

    def frame(data: str | bytes) -> None:
        found = EVENT_FRAME.match(data) if isinstance(data, str) else None
        if found:
            name, payload, *_ = [*json.loads(found.group(1)), None]
            if name == "resume_thread":
                threads.append(payload)

    page.on("websocket", lambda socket: socket.on("framereceived", frame))
    return threads


def wait_in_page(page: Page, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until for what the page's event handlers see: Playwright's sync API runs them only while it is called."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        page.wait_for_timeout(250)


def prompts_for(swarm: SwarmStack, question: str) -> list[list[dict]]:
    """The prompts the chat replicas logged (LOG_PROMPTS) whose last message is `question`."""
    out = docker("service", "logs", "--raw", swarm.service("chat-app")).stdout
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [
        e["messages"]
        for e in events
        if e.get("event") == "prompt" and e["messages"][-1] == {"role": "user", "content": question}
    ]


def test_a_killed_chat_replica_moves_the_browser_to_another_and_the_thread_resumes(
    swarm: SwarmStack, artifacts: Path
) -> None:
    swarm.wait_tasks("chat-app", 2)
    with chromium_page() as page:
        resumed = resumed_threads(page)
        log_in(page, swarm)
        ask(page, "first question before the crash")
        ask(page, "second question before the crash")
        thread_id = page.url.rsplit("/", 1)[-1]
        victim = serving_replica(swarm, "chat-app", "chat_active_sessions")
        docker("kill", victim)

        # The page reconnects through the edge to the other replica, which resumes the thread from PostgreSQL.
        wait_in_page(page, lambda: bool(resumed), 60, "the page's session resumed on another replica")
        steps = resumed[-1]["steps"]
        assert resumed[-1]["id"] == thread_id
        user_turns = [s["output"] for s in steps if s["type"] == "user_message"]
        assert user_turns == ["first question before the crash", "second question before the crash"]
        assert len([s for s in steps if s["type"] == "assistant_message"]) == 2, "every finished answer"
        survivor = serving_replica(swarm, "chat-app", "chat_active_sessions")
        assert survivor != victim

        ask(page, "third question after the crash")
        expect(finished_answers(page)).to_have_count(3)
        page.screenshot(path=str(artifacts / "swarm-chat-resumed.png"))
    # The model got the whole conversation back, from the database.
    (prompt,) = prompts_for(swarm, "third question after the crash")
    assert [m["content"] for m in prompt if m["role"] == "user"] == [
        "first question before the crash",
        "second question before the crash",
        "third question after the crash",
    ]
    swarm.wait_tasks("chat-app", 2)  # Swarm replaced the killed task


async def ask_while_a_router_dies(swarm: SwarmStack) -> tuple[Reply, Reply]:
    cookies = dict(login(swarm.url("chat-app"), "admin", swarm.secret("admin_password")).cookies)
    client = ChainlitClient(swarm.url("chat-app"), cookies=cookies)
    await client.connect()
    try:
        await client.change_settings(LONG_ANSWER)

        async def kill_the_serving_router() -> None:
            router = await asyncio.to_thread(serving_replica, swarm, "router", "router_upstream_in_flight")
            await asyncio.to_thread(docker, "kill", router)

        cut = await client.ask("Tell me a long story", on_first_token=kill_the_serving_router)
        await client.change_settings({"max_tokens": 16})
        after = await client.ask("And now a short one")
        return cut, after
    finally:
        await client.close()


def test_a_killed_router_replica_mid_stream_keeps_the_partial_answer_and_the_next_message_works(
    swarm: SwarmStack,
) -> None:
    swarm.wait_tasks("router", 2)
    (model,) = swarm.containers("foundry-local")
    with throttled(model, SLOW_CPUS):
        cut, after = asyncio.run(ask_while_a_router_dies(swarm))
    final = cut.final_text()
    assert cut.streamed_text.strip(), cut.events
    assert final.startswith(cut.streamed_text), "the streamed part of the answer is kept"
    assert "**[interrupted]**" in final and "closed the connection" in final, final
    assert after.streamed_text.strip() and SWARM_MODEL in after.final_text(), after.events
    swarm.wait_tasks("router", 2)


@contextmanager
def second_model_runtime(tiny_model: Path, port: int, tmp: Path) -> Iterator[str]:
    """The embedded model served by one more runtime, on the host: the upstream name the routers give it."""
    with ready_gateway(
        tmp, port=port, GATEWAY_HOST="0.0.0.0", FOUNDRY_MODEL_PATH=str(tiny_model), FOUNDRY_MODEL_ID=SWARM_MODEL
    ):
        yield f"host.docker.internal:{port}"


def test_a_killed_model_task_is_left_within_a_probe_interval_and_used_again_when_back(
    swarm: SwarmStack, tiny_model: Path, twin_port: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    swarm.wait_tasks("foundry-local", 1)
    # Healthy means running: its model may still be loading, so wait until a router serves from it.
    wait_until(
        lambda: any(u.startswith("tasks.") for u in upstreams_serving(swarm, swarm.containers("router")[0])),
        PROBE_INTERVAL_SECONDS * 10,
        "a router serving the model from the model task",
        interval=0.5,
    )
    with second_model_runtime(tiny_model, twin_port, tmp_path_factory.mktemp("twin")) as twin:
        (task,) = swarm.containers("foundry-local")
        task_upstream = next(u for u in upstreams_serving(swarm, swarm.containers("router")[0]) if u != twin)
        wait_until(
            lambda: every_router_serves_from(swarm, {task_upstream, twin}),
            PROBE_INTERVAL_SECONDS * 10,
            "every router serving the model from the task and the host runtime",
            interval=0.5,
        )
        docker("kill", task)
        # Within one probe interval (and the time to ask each router through docker exec).
        wait_until(
            lambda: every_router_serves_from(swarm, {twin}),
            PROBE_INTERVAL_SECONDS + 5,
            "every router leaving the killed task",
            interval=0.2,
        )
        assert set(where_answered(swarm, 8)) == {twin}, "nothing goes to the killed task"

        # Swarm starts a new task (a new address); the routers find it at their next DNS round.
        swarm.wait_tasks("foundry-local", 1)
        wait_until(
            lambda: all(len(upstreams_serving(swarm, r)) == 2 for r in swarm.containers("router")),
            PROBE_INTERVAL_SECONDS + 10,
            "every router using the new task",
            interval=0.5,
        )
        used = where_answered(swarm, 8)
        assert any(u.startswith("tasks.foundry-local") for u in used), used
