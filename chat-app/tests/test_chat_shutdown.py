"""Stopping the chat as Docker and Swarm do (SIGTERM): the answers in flight finish, `/healthz` says the chat is
stopping (a load balancer then sends new sessions to other replicas), and the process exits on its own, with 0.
A real chat process and router in front of a paced upstream, slow on purpose so that the stop lands mid-answer.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import ChatProcess, PacedUpstream, connected, start_chat, start_paced_upstream

pytestmark = pytest.mark.integration

# 40 tokens, one every 50 ms: an answer streams for about 2 s.
TOKENS = 40


@pytest.fixture
def slow() -> Iterator[PacedUpstream]:
    upstream = start_paced_upstream(first_token_ms=10, token_interval_ms=50)
    yield upstream
    upstream.stop()


@pytest.fixture
def start(slow: PacedUpstream, tmp_path: Path) -> Iterator:
    started: list[ChatProcess] = []

    def run(**env: str) -> ChatProcess:
        chat = start_chat(tmp_path / f"chat{len(started)}", [slow.url], **{"MAX_TOKENS": str(TOKENS), **env})
        started.append(chat)
        chat.wait_healthy()
        return chat

    yield run
    for chat in started:
        chat.stop()


async def until_stopping(chat: ChatProcess) -> dict:
    """Polls /healthz until the chat says it is stopping; returns what it said."""
    async with httpx.AsyncClient(base_url=chat.url, timeout=5) as http:
        while (health := await http.get("/healthz")).status_code == 200:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)
    assert health.status_code == 503, health.text
    return health.json()


def test_a_stop_lets_the_answers_in_flight_finish_then_exits(start) -> None:
    chat = start(SHUTDOWN_NOTICE_SECONDS="1", SHUTDOWN_GRACE_SECONDS="30")
    said: dict = {}

    async def scenario() -> tuple:
        async with connected(chat.url) as first:

            async def stop_now() -> None:
                chat.proc.send_signal(signal.SIGTERM)
                said.update(await until_stopping(chat))

            async def arrives_while_stopping() -> object:
                # A balancer that has not yet seen the failing health check still sends sessions here.
                async with connected(chat.url) as late:
                    return await late.ask("and another")

            answer = await first.ask("a long answer please", on_first_token=stop_now)
            late_answer = await arrives_while_stopping()
            return answer, late_answer

    answer, late_answer = asyncio.run(scenario())
    assert said["status"] == "stopping" and "new sessions go to another replica" in said["message"]
    for reply in (answer, late_answer):
        text = reply.final_text()
        assert f"tok{TOKENS - 1}" in text and "[interrupted]" not in text, text
    assert chat.proc.wait(timeout=30) == 0
    assert [e["in_flight"] for e in chat.events("draining")] == [1]
    assert [e["in_flight"] for e in chat.events("drained")] == [0]


async def stop_mid_answer(chat: ChatProcess, signals: int) -> None:
    """Asks for a long answer, sends `signals` SIGTERMs once it streams (the second once the first is seen), and
    waits until the process has exited."""
    streaming = asyncio.Event()

    async def first_token() -> None:
        streaming.set()

    async with connected(chat.url) as client:
        asking = asyncio.create_task(client.ask("a very long answer", on_first_token=first_token))
        await streaming.wait()
        chat.proc.send_signal(signal.SIGTERM)
        for _ in range(signals - 1):
            await until_stopping(chat)
            chat.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(chat.proc.wait, 30)
        asking.cancel()


def test_a_stop_waits_no_longer_than_the_grace_period(start, slow: PacedUpstream) -> None:
    chat = start(SHUTDOWN_GRACE_SECONDS="1", MAX_TOKENS="1000")  # 50 s of answer
    asyncio.run(stop_mid_answer(chat, signals=1))
    assert chat.proc.returncode == 0
    # It left before the answer was done: the grace period, not the answer, ended the wait.
    assert slow.stats()["finished"] == 0
    assert [e["in_flight"] for e in chat.events("drained")] == [1]


def test_a_second_signal_stops_at_once(start, slow: PacedUpstream) -> None:
    chat = start(SHUTDOWN_GRACE_SECONDS="60", MAX_TOKENS="1000")
    asyncio.run(stop_mid_answer(chat, signals=2))
    assert slow.stats()["finished"] == 0
    assert len(chat.events("stopping_now")) == 1 and not chat.events("drained")
