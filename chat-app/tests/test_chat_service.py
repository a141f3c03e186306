"""The chat service, through the router, against the real embedded runtime (tiny model), driven over Chainlit's
Socket.IO protocol.

The tiny model writes gibberish: the assertions are about structure (streamed tokens, usage, routing), never
about what the answer says.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from chat_support import ChainlitClient, ChatProcess, ask_once, connected

from tests.support.process import GatewayProcess, log_events

pytestmark = pytest.mark.integration


def prompts_of(chat: ChatProcess, session_id: str) -> list[list[dict]]:
    """What the service sent upstream for one session (LOG_PROMPTS=true), in order."""
    events = log_events(chat.log_path)
    return [e["messages"] for e in events if e.get("event") == "prompt" and e.get("session_id") == session_id]


def upstream_of(chat: ChatProcess) -> str:
    return chat.get("/readyz").json()["upstreams"][0]["name"]


def test_page_and_operational_routes(chat: ChatProcess, gateway: GatewayProcess) -> None:
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
    assert upstream["models"] == gateway.healthz().json()["models"]
    assert body["models"] == upstream["models"]
    assert "gen_ai_client_operation_duration_seconds" in chat.get("/metrics").text
    assert chat.metric("chat_router_up") == 1


def test_two_sessions_stream_answers_and_keep_their_own_history(chat: ChatProcess, gateway: GatewayProcess) -> None:
    async def scenario():
        alice, bob = ChainlitClient(chat.url), ChainlitClient(chat.url)
        await asyncio.gather(alice.connect(), bob.connect())
        try:
            first = await asyncio.gather(alice.ask("alice one"), bob.ask("bob one"))
            second = await asyncio.gather(alice.ask("alice two"), bob.ask("bob two"))
        finally:
            await asyncio.gather(alice.close(), bob.close())
        return alice.session_id, bob.session_id, [*first, *second]

    alice_id, bob_id, replies = asyncio.run(scenario())
    upstream_name = gateway.url.removeprefix("http://")
    for reply in replies:
        assert len(reply.streamed_ids) == 1, "one streamed assistant message per question"
        final = reply.final_text()
        assert reply.streamed_text and final.startswith(reply.streamed_text), "the answer is streamed, then completed"
        assert reply.usage_tokens > 0, "the upstream's usage is shown"
        assert f"on {upstream_name} (local)" in final, final
        assert " tokens · " in final

    alice_prompts, bob_prompts = prompts_of(chat, alice_id), prompts_of(chat, bob_id)
    assert len(alice_prompts) == 2 and len(bob_prompts) == 2
    alice_users = [m["content"] for m in alice_prompts[-1] if m["role"] == "user"]
    bob_users = [m["content"] for m in bob_prompts[-1] if m["role"] == "user"]
    assert alice_users == ["alice one", "alice two"]
    assert bob_users == ["bob one", "bob two"]
    assert [m["role"] for m in alice_prompts[-1]] == ["system", "user", "assistant", "user"]


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
    assert prompts_of(chat, session_id)[-1][-1] == {"role": "user", "content": "hello there"}


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
