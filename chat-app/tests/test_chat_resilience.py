"""Failures the chat must survive, as its user sees them: paced upstreams (real local processes that misbehave on
purpose) behind a real router. The stop button, a stream that breaks mid-answer, a failover, full queues, no
upstream at all, a model still downloading. How the router picks and fails over is tested in router/tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_support import (
    ChainlitClient,
    ChatProcess,
    PacedUpstream,
    Reply,
    connected,
    converse,
    start_chat,
    start_paced_upstream,
)

from tests.support.process import free_port, wait_until

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


def name_of(upstream: PacedUpstream) -> str:
    return upstream.url.removeprefix("http://").removesuffix("/v1")


def step(text: str, number: int = 1) -> dict:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "threadId": "",
        "name": "User",
        "type": "user_message",
        "output": text,
        "createdAt": "2026-01-01T00:00:00Z",
    }


async def ask(chat: ChatProcess, text: str) -> Reply:
    return await converse(chat.url, text)


def test_stop_button_cancels_the_upstream_request(upstreams, chats, tmp_path: Path) -> None:
    slow = start_paced_upstream(first_token_ms=10, token_interval_ms=100)
    upstreams.append(slow)
    chat = run_chat(chats, tmp_path, [slow.url], MAX_TOKENS="300")

    async def scenario():
        async with connected(chat.url) as client:
            await client.sio.emit("client_message", {"message": step("a long answer please"), "fileReferences": []})
            await client.next_event("stream_token")  # the answer is streaming
            await client.stop_task()
            updates = []
            while True:
                event = await client.next_any({"update_message", "task_end"})
                if event[0] == "task_end":
                    return updates
                updates.append(event[1])

    updates = asyncio.run(scenario())
    assert any("stopped" in u["output"] and "tok0" in u["output"] for u in updates), updates
    # Through the router too: closing the chat's request closes the router's request upstream.
    wait_until(lambda: slow.stats()["cancelled"] == 1, 10, "the upstream to see its request cancelled")
    assert slow.stats()["finished"] == 0
    assert chat.metric('chat_messages_total{outcome="stopped"}') == 1


def test_stream_that_breaks_keeps_the_partial_answer_marked_interrupted(upstreams, chats, tmp_path: Path) -> None:
    flaky = start_paced_upstream(first_token_ms=5, token_interval_ms=2, break_after=5)
    upstreams.append(flaky)
    chat = run_chat(chats, tmp_path, [flaky.url])

    reply = asyncio.run(ask(chat, "break please"))
    final = reply.final_text()
    assert final.startswith(" tok0 tok1 tok2 tok3 tok4"), final
    # The router ends the broken stream with an error event: its words say which upstream and what failed.
    assert "**[interrupted]** The answer was interrupted after 5 chunks: " in final, final
    assert f"{name_of(flaky)} " in final.split("*— ")[0], final
    assert f"on {name_of(flaky)} (local)" in final  # the footer still says where it ran
    assert "Traceback" not in final
    assert chat.metric('chat_messages_total{outcome="interrupted"}') == 1
    assert chat.metric("gen_ai_client_operation_duration_seconds_count", error_type="stream_error") == 1


def test_the_footer_says_when_the_router_failed_over(upstreams, chats, tmp_path: Path) -> None:
    broken = start_paced_upstream(fail_status=500)
    healthy = start_paced_upstream(first_token_ms=5, token_interval_ms=1)
    upstreams += [broken, healthy]
    # Both serve the model and neither is busy: least in flight, then the order of FOUNDRY_LOCAL_URLS.
    chat = run_chat(chats, tmp_path, [broken.url, healthy.url])

    final = asyncio.run(ask(chat, "anyone there?")).final_text()
    assert f"on {name_of(healthy)} (local)" in final, final
    assert f"after failing over from {name_of(broken)}" in final, final
    assert "Could not answer" not in final
    assert chat.metric('chat_messages_total{outcome="ok"}') == 1


def test_full_queues_are_a_429_said_in_words_and_the_message_is_kept(upstreams, chats, tmp_path: Path) -> None:
    slow = start_paced_upstream(first_token_ms=5, token_interval_ms=50)
    upstreams.append(slow)
    chat = run_chat(
        chats, tmp_path, [slow.url], MAX_TOKENS="200", UPSTREAM_MAX_CONCURRENCY="1", UPSTREAM_QUEUE_SIZE="0"
    )

    async def scenario() -> Reply:
        busy, refused = ChainlitClient(chat.url), ChainlitClient(chat.url)
        await asyncio.gather(busy.connect(), refused.connect())
        try:
            await busy.sio.emit("client_message", {"message": step("take the only slot"), "fileReferences": []})
            await busy.next_event("stream_token")  # the upstream's one slot is taken
            reply = await refused.ask("and me?")
            await busy.stop_task()
            return reply
        finally:
            await asyncio.gather(busy.close(), refused.close())

    reply = asyncio.run(scenario())
    final = reply.final_text()
    assert not reply.streamed_ids
    assert final.startswith("**Could not answer.** The router answered HTTP 429: "), final
    assert "queue is full" in final and "retry after" in final
    assert final.endswith("Your message was kept: send it again once that is done.")
    assert chat.metric('chat_messages_total{outcome="failed"}') == 1
    assert chat.metric("gen_ai_client_operation_duration_seconds_count", error_type="http_429") == 1


def test_page_loads_and_says_so_when_no_upstream_is_reachable(chats, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    chat = run_chat(chats, tmp_path, [nowhere])
    assert chat.get("/").status_code == 200
    ready = chat.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["upstreams"][0]["url"] == nowhere and body["upstreams"][0]["state"] == "down"
    assert body["upstreams"][0]["error"]
    assert "start Foundry Local" in body["message"]
    assert chat.metric("chat_router_up") == 0

    async def scenario():
        async with connected(chat.url) as client:
            return client.started, await client.ask("hello?")

    start, reply = asyncio.run(scenario())
    assert any("No model is reachable right now" in t and nowhere in t for t in start.texts())
    answer = reply.final_text()
    assert answer.startswith("**Could not answer.** No upstream serves a model yet"), answer
    assert "Your message was kept" in answer
    assert not reply.streamed_ids
    assert chat.metric('chat_messages_total{outcome="failed"}') == 1


def test_a_chosen_model_goes_to_the_router_which_says_why_it_cannot_answer(chats, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    chat = run_chat(chats, tmp_path, [nowhere], MODEL="phi-4-mini")

    final = asyncio.run(ask(chat, "hello?")).final_text()
    assert final.startswith("**Could not answer.** The router answered HTTP 503: "), final
    assert "Your message was kept" in final
    assert chat.metric("gen_ai_client_operation_duration_seconds_count", error_type="http_503") == 1


def test_banner_while_the_embedded_model_downloads(upstreams, chats, tmp_path: Path) -> None:
    downloading = start_paced_upstream(downloading=42.0)
    upstreams.append(downloading)
    chat = run_chat(chats, tmp_path, [downloading.url])
    body = chat.get("/readyz").json()
    assert chat.get("/readyz").status_code == 503
    assert body["upstreams"][0]["service_state"] == "downloading"
    assert body["upstreams"][0]["download_percent"] == 42.0

    async def scenario() -> list[str]:
        async with connected(chat.url) as client:
            # The banner is sent by its own task: before or after the settings panel.
            texts = client.started.texts()
            while not any("downloading" in text for text in texts):
                _, step = await client.next_any({"new_message", "update_message"})
                texts.append(step["output"])
            return texts

    texts = asyncio.run(scenario())
    assert any(f"The embedded model is downloading 42%** on `{name_of(downloading)}`" in text for text in texts), texts
