"""Failures the chat must survive, against paced upstreams (real local processes that misbehave on purpose):
the stop button, a stream that breaks mid-answer, failover before the first token, no upstream at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_support import ChainlitClient, ChatProcess, PacedUpstream, start_chat, start_paced_upstream

from tests.support.process import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def upstreams() -> Iterator[list[PacedUpstream]]:
    started: list[PacedUpstream] = []
    yield started
    for upstream in started:
        upstream.stop()


@pytest.fixture
def chats() -> Iterator[list[ChatProcess]]:
    started: list[ChatProcess] = []
    yield started
    for chat in started:
        chat.stop()


def run_chat(chats: list[ChatProcess], tmp_path: Path, urls: list[str], **env: str) -> ChatProcess:
    chat = start_chat(tmp_path, urls, **env)
    chats.append(chat)
    chat.wait_healthy()
    return chat


def test_stop_button_cancels_the_upstream_request(upstreams, chats, tmp_path: Path) -> None:
    slow = start_paced_upstream(first_token_ms=10, token_interval_ms=100)
    upstreams.append(slow)
    chat = run_chat(chats, tmp_path, [slow.url], MAX_TOKENS="300")

    async def scenario():
        client = ChainlitClient(chat.url)
        await client.connect()
        try:
            step = {"id": "00000000-0000-4000-8000-000000000001", "threadId": "", "name": "User"}
            step |= {"type": "user_message", "output": "a long answer please", "createdAt": "2026-01-01T00:00:00Z"}
            await client.sio.emit("client_message", {"message": step, "fileReferences": []})
            await client.next_event("stream_token")  # the answer is streaming
            await client.stop_task()
            updates = []
            while True:
                event = await client.next_any({"update_message", "task_end"})
                if event[0] == "task_end":
                    return updates
                updates.append(event[1])
        finally:
            await client.close()

    updates = asyncio.run(scenario())
    assert any("stopped" in u["output"] and "tok0" in u["output"] for u in updates), updates
    wait_until(lambda: slow.stats()["cancelled"] == 1, 10, "the upstream to see its request cancelled")
    assert slow.stats()["finished"] == 0
    assert chat.metric('chat_messages_total{outcome="stopped"}') == 1


def test_stream_that_breaks_keeps_the_partial_answer_marked_interrupted(upstreams, chats, tmp_path: Path) -> None:
    flaky = start_paced_upstream(first_token_ms=5, token_interval_ms=2, break_after=5)
    upstreams.append(flaky)
    chat = run_chat(chats, tmp_path, [flaky.url])

    async def scenario():
        client = ChainlitClient(chat.url)
        await client.connect()
        try:
            return await client.ask("break please")
        finally:
            await client.close()

    reply = asyncio.run(scenario())
    final = reply.final_text()
    assert final.startswith(" tok0 tok1 tok2 tok3 tok4"), final
    assert "[interrupted]" in final
    assert flaky.url.removeprefix("http://").removesuffix("/v1") in final  # which upstream
    assert "Traceback" not in final
    assert chat.metric('chat_messages_total{outcome="interrupted"}') == 1


def test_failover_to_the_next_upstream_before_the_first_token(upstreams, chats, tmp_path: Path) -> None:
    broken = start_paced_upstream(fail_status=500)
    healthy = start_paced_upstream(first_token_ms=5, token_interval_ms=1)
    upstreams += [broken, healthy]
    chat = run_chat(chats, tmp_path, [broken.url, healthy.url])

    async def scenario():
        client = ChainlitClient(chat.url)
        await client.connect()
        try:
            return await client.ask("anyone there?")
        finally:
            await client.close()

    reply = asyncio.run(scenario())
    final = reply.final_text()
    healthy_name = healthy.url.removeprefix("http://").removesuffix("/v1")
    broken_name = broken.url.removeprefix("http://").removesuffix("/v1")
    assert f"on {healthy_name} (local)" in final
    assert f"after failing over from {broken_name} answered HTTP 500" in final
    assert chat.metric("chat_upstream_failovers_total") == 1
    assert chat.metric('chat_messages_total{outcome="ok"}') == 1


def test_page_loads_and_says_so_when_no_upstream_is_reachable(chats, tmp_path: Path) -> None:
    from tests.support.process import free_port

    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    chat = run_chat(chats, tmp_path, [nowhere])
    assert chat.get("/").status_code == 200
    ready = chat.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["upstreams"][0]["state"] == "down"
    assert "connection failed" in ready.json()["upstreams"][0]["error"]

    async def scenario():
        client = ChainlitClient(chat.url)
        start = await client.connect()
        try:
            return start, await client.ask("hello?")
        finally:
            await client.close()

    start, reply = asyncio.run(scenario())
    assert any("No model is reachable right now" in t and nowhere in t for t in start.texts())
    answer = reply.final_text()
    assert "Could not answer" in answer and "no local Foundry Local upstream is reachable" in answer
    assert not reply.streamed_ids


def test_banner_while_the_embedded_model_downloads(upstreams, chats, tmp_path: Path) -> None:
    downloading = start_paced_upstream(downloading=42.0)
    upstreams.append(downloading)
    chat = run_chat(chats, tmp_path, [downloading.url])
    body = chat.get("/readyz").json()
    assert chat.get("/readyz").status_code == 503
    assert body["upstreams"][0]["service_state"] == "downloading"
    assert body["upstreams"][0]["download_percent"] == 42.0

    async def scenario() -> list[str]:
        client = ChainlitClient(chat.url)
        start = await client.connect()
        try:
            # The banner is sent by its own task: before or after the settings panel.
            texts = start.texts()
            while not any("downloading" in text for text in texts):
                _, step = await client.next_any({"new_message", "update_message"})
                texts.append(step["output"])
            return texts
        finally:
            await client.close()

    texts = asyncio.run(scenario())
    assert any("The embedded model is downloading 42%" in text for text in texts), texts
