"""The chat service, through the router, against the real embedded runtime serving the real model
(SmolLM2-135M-Instruct, the chat_gateway fixture), driven over Chainlit's Socket.IO protocol.

Structure (streamed tokens, usage, routing, logs) and, where the chat settings ask for greedy answers
(temperature 0), meaning: a conversation remembers the name it was told, per session, and still does when the
chat service has restarted and the thread is resumed from its database.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from chat_support import ChainlitClient, ChatProcess, ask_once, connected, start_chat

from foundry_chat.transcript import IN_PROGRESS
from tests.support.process import CHAT_MODEL_ID, GatewayProcess, log_events, wait_until

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0}  # what the settings panel sends when the temperature slider is moved to 0
REMEMBER = "My name is {name}. Please remember it."
NAME = "What is my name?"  # alone, the model does not know it: only the turn before can tell


@pytest.fixture(scope="module")
def chat(real_model_chat: ChatProcess) -> ChatProcess:
    """This module's chat service in front of the real model, so that answers can be checked."""
    return real_model_chat


def upstream_of(chat: ChatProcess) -> str:
    return chat.get("/readyz").json()["upstreams"][0]["name"]


def test_page_and_operational_routes(chat: ChatProcess, chat_gateway: GatewayProcess) -> None:
    page = chat.get("/")
    assert page.status_code == 200 and "<title>Foundry Local Chat</title>" in page.text
    assert chat.get("/healthz").json() == {"status": "ok"}
    ready = chat.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert chat.router is not None
    assert body["router"] == chat.router.base_url
    (upstream,) = body["upstreams"]  # as the router reports it
    assert upstream["state"] == "up"
    assert upstream["shape"] == "foundry-embedded"
    assert upstream["models"] == chat_gateway.healthz().json()["models"] == [CHAT_MODEL_ID]
    assert body["models"] == upstream["models"]
    assert "gen_ai_client_operation_duration_seconds" in chat.get("/metrics").text
    assert chat.metric("chat_router_up") == 1


def test_two_sessions_stream_answers_and_keep_their_own_history(
    chat: ChatProcess, chat_gateway: GatewayProcess
) -> None:
    """Two sessions at once tell the model a name each, then ask it back: each answer names its own session's."""

    async def scenario():
        alice, bob = ChainlitClient(chat.url), ChainlitClient(chat.url)
        await asyncio.gather(alice.connect(), bob.connect())
        try:
            await asyncio.gather(alice.change_settings(GREEDY), bob.change_settings(GREEDY))
            first = await asyncio.gather(alice.ask(REMEMBER.format(name="Ada")), bob.ask(REMEMBER.format(name="Bob")))
            second = await asyncio.gather(alice.ask(NAME), bob.ask(NAME))
        finally:
            await asyncio.gather(alice.close(), bob.close())
        return alice.session_id, bob.session_id, [*first, *second]

    alice_id, bob_id, replies = asyncio.run(scenario())
    alice_name, bob_name = replies[2].streamed_text, replies[3].streamed_text
    assert "Ada" in alice_name and "Bob" not in alice_name, alice_name
    assert "Bob" in bob_name and "Ada" not in bob_name, bob_name
    upstream_name = chat_gateway.url.removeprefix("http://")
    for reply in replies:
        assert len(reply.streamed_ids) == 1, "one streamed assistant message per question"
        final = reply.final_text()
        assert reply.streamed_text and final.startswith(reply.streamed_text), "the answer is streamed, then completed"
        assert reply.usage_tokens > 0, "the upstream's usage is shown"
        assert f"on {upstream_name} (local)" in final, final
        assert " tokens · " in final

    alice_prompts, bob_prompts = chat.prompts(alice_id), chat.prompts(bob_id)
    assert len(alice_prompts) == 2 and len(bob_prompts) == 2
    alice_users = [m["content"] for m in alice_prompts[-1] if m["role"] == "user"]
    bob_users = [m["content"] for m in bob_prompts[-1] if m["role"] == "user"]
    assert alice_users == [REMEMBER.format(name="Ada"), NAME]
    assert bob_users == [REMEMBER.format(name="Bob"), NAME]
    assert [m["role"] for m in alice_prompts[-1]] == ["system", "user", "assistant", "user"]


def stored_answers(url: str, thread_id: str, answers: int) -> dict:
    """The thread as the sidebar opens it (the local user's), once it holds `answers` finished answers."""
    token = httpx.post(f"{url}/auth/header", timeout=5).cookies["access_token"]
    found: dict = {}

    def stored() -> bool:
        response = httpx.get(f"{url}/project/thread/{thread_id}", cookies={"access_token": token}, timeout=5)
        assert response.status_code in {200, 404}, response.text
        found["thread"] = response.json() if response.status_code == 200 else {}
        steps = found["thread"].get("steps") or []
        done = [s for s in steps if "answer" in (s.get("metadata") or {})]
        return len([s for s in done if s["metadata"]["answer"]["outcome"] != IN_PROGRESS]) >= answers

    wait_until(stored, 15, f"{answers} answers stored in thread {thread_id}")
    return found["thread"]


def test_a_thread_resumed_after_a_restart_brings_its_history_to_the_model(chat: ChatProcess, tmp_path: Path) -> None:
    """The first turn of the conversation, then the chat service stops and starts again on the same database (in
    front of the module's router); the thread is resumed and the next answer knows the name from the stored turn."""
    assert chat.router is not None
    told = REMEMBER.format(name="Ada")

    def chat_service() -> ChatProcess:
        # The same folder each time: the same SQLite history and token key (start_chat's CHAT_DATA_DIR).
        service = start_chat(tmp_path, [], router=chat.router, LOG_PROMPTS="true")
        service.wait_healthy()
        return service

    async def first_visit(url: str) -> tuple[str, str]:
        async with connected(url) as client:
            await client.change_settings(GREEDY)
            reply = await client.ask(told)
        return client.thread_id, reply.streamed_text

    async def second_visit(url: str, thread_id: str) -> tuple[ChainlitClient, dict, str]:
        async with connected(url, thread_id=thread_id) as client:
            resumed = await client.next_event("resume_thread")
            reply = await client.ask(NAME)
        return client, resumed, reply.streamed_text

    first = chat_service()
    try:
        thread_id, first_answer = asyncio.run(first_visit(first.url))
        stored_answers(first.url, thread_id, answers=1)
    finally:
        assert first.stop() == 0
    second = chat_service()
    try:
        client, resumed, answer = asyncio.run(second_visit(second.url, thread_id))
        assert client.thread_id == thread_id, "the next message continues the same thread"
        assert [s["output"] for s in resumed["steps"] if s["type"] == "user_message"] == [told]
        assert "Ada" in answer, answer
        panel = client.started.named("chat_settings")[-1]
        assert {widget["id"]: widget["initial"] for widget in panel}["temperature"] == 0, "the thread's settings"
        # What went to the model: the stored turn (the question and the answer's words), then the new question.
        prompts = [e["messages"] for e in log_events(second.log_path) if e.get("event") == "prompt"]
        last = next(p for p in reversed(prompts) if p[-1]["content"] == NAME)
        assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
        assert [m["content"] for m in last[1:]] == [told, first_answer, NAME]
        stored = stored_answers(second.url, thread_id, answers=2)
        assert [s["output"] for s in stored["steps"] if s["type"] == "user_message"] == [told, NAME]
    finally:
        second.stop()


def test_metrics_count_time_to_first_chunk_and_usage(chat: ChatProcess) -> None:
    before = chat.metric("gen_ai_client_operation_time_to_first_chunk_seconds_count")

    reply = ask_once(chat.url, "count me")
    assert reply.streamed_text
    assert chat.metric("gen_ai_client_operation_time_to_first_chunk_seconds_count") == before + 1
    metrics = chat.get("/metrics").text
    assert 'gen_ai_token_type="input"' in metrics and 'gen_ai_token_type="output"' in metrics
    assert 'gen_ai_provider_name="foundry_local"' in metrics
    # The upstream the router chose (its X-Foundry-Upstream), not the router.
    assert f'server_address="{upstream_of(chat)}"' in metrics
    assert chat.metric("chat_messages_total") >= 1


def test_bad_input_never_reaches_the_upstream(chat: ChatProcess) -> None:
    calls_before = chat.metric("gen_ai_client_operation_duration_seconds_count")
    rejected_before = chat.metric('chat_messages_total{outcome="rejected"}')

    async def scenario():
        async with connected(chat.url) as client:
            return [await client.ask(text) for text in ("", "   \n\t ", "\x00\x01", "x" * 501)]

    empty, blank, controls, too_long = asyncio.run(scenario())
    for reply in (empty, blank, controls, too_long):
        assert not reply.streamed_ids
    assert any("empty" in t for t in empty.texts()) and any("empty" in t for t in blank.texts())
    assert any("control characters" in t for t in controls.texts())
    assert any("501 characters" in t and "MAX_INPUT_CHARS" in t for t in too_long.texts())
    assert chat.metric("gen_ai_client_operation_duration_seconds_count") == calls_before
    assert chat.metric('chat_messages_total{outcome="rejected"}') == rejected_before + 4


def test_control_characters_are_removed_before_sending(chat: ChatProcess) -> None:
    async def scenario():
        async with connected(chat.url) as client:
            return client.session_id, await client.ask("he\x00llo\x07 there")

    session_id, reply = asyncio.run(scenario())
    assert reply.streamed_text
    assert chat.prompts(session_id)[-1][-1] == {"role": "user", "content": "hello there"}


def test_model_that_disappeared_between_pick_and_send(chat: ChatProcess) -> None:
    calls_before = chat.metric("gen_ai_client_operation_duration_seconds_count")

    # What the settings panel sends after the user picked a model that is unloaded since.
    reply = ask_once(chat.url, "are you there?", {"model": "vanished-model-generic-cpu:1"})
    assert not reply.streamed_ids
    assert any("vanished-model-generic-cpu:1" in t and "no longer loaded" in t for t in reply.texts())
    assert reply.named("chat_settings"), "the settings are sent again with the models loaded now"
    assert chat.metric("gen_ai_client_operation_duration_seconds_count") == calls_before


def test_logs_are_json_with_a_request_id_per_message(chat: ChatProcess) -> None:
    answers = [e for e in log_events(chat.log_path) if e.get("event") == "chat_answer"]
    assert answers
    assert all(e.get("request_id") and e.get("session_id") for e in answers)
    assert len({e["request_id"] for e in answers}) == len(answers)
    assert "Traceback" not in chat.log()
    # The same id in the router's log (X-Request-Id), and from there in the upstream's.
    assert chat.router is not None
    routed = {e.get("request_id") for e in log_events(chat.router.log_path) if e.get("event") == "chat_completion"}
    assert {e["request_id"] for e in answers} <= routed


def test_bad_configuration_stops_the_service_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "foundry_chat"],
        env={"ROUTER_URL": "router:4000", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ROUTER_URL='router:4000'" in result.stderr
    assert "Traceback" not in result.stderr
