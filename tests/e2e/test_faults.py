"""Faults, injected with the real Docker engine into a running stack: what the user sees, what is kept, what the
metrics record, and how the stack recovers.

A stack of its own (the embedded Foundry Local, the router and the chat service, no host Foundry Local, so that
nothing can fail over around the fault) with a 5 s REQUEST_TIMEOUT_SECONDS. The router meets each fault first:
it cuts a broken stream with an error event, or refuses with what failed; the chat shows its words. Answers
that must still be streaming when the fault hits come from a CPU-throttled runtime (`docker update --cpus`)
asked for many tokens; the fault is injected when the first token has arrived. Open WebUI's crash runs on the
shared stack (it holds the accounts).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import ChainlitClient, Reply, connected, converse

from tests.e2e.stack import ADMIN, TINY_MODEL, TINY_MODEL_NAME, Stack, webui
from tests.support.docker import crash, docker, health, inspect, throttled
from tests.support.process import wait_until

pytestmark = pytest.mark.e2e

TIMEOUT_SECONDS = 5
SERVICES = ("foundry-local", "router", "chat-app")
# Nearly the tiny model's whole context (4096): seconds of streaming at a tenth of a CPU, while a fault that
# runs a command in the throttled container (docker exec) takes about half a second.
LONG_ANSWER = {"max_tokens": 3968}
SLOW_CPUS = 0.1
# The chat service's metric of what happened to each message, and the router's of each upstream request.
MESSAGES = "chat_messages_total"
OPERATIONS = "gen_ai_server_request_duration_seconds_count"


@pytest.fixture(scope="module")
def faults(offline_images: float, tiny_model: Path, artifacts: Path) -> Iterator[Stack]:
    stack = Stack.create(
        f"fs-faults-{uuid.uuid4().hex[:8]}",
        # The tiny model: its answers run to max_tokens, seconds of streaming to inject a fault into.
        OFFLINE_MODEL_DIR=str(tiny_model),
        OFFLINE_MODEL_NAME=TINY_MODEL_NAME,
        FOUNDRY_LOCAL_URLS="http://foundry-local:5273/v1",
        MODEL=TINY_MODEL,
        MAX_TOKENS="24",
        REQUEST_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
    )
    stack.down(volumes=True)
    try:
        yield stack
    finally:
        (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=400))
        stack.down(volumes=True)


def up(stack: Stack, *services: str) -> None:
    """Start what is not running and wait until it is healthy, and the chat until it has the model (healthy only
    means running: the model may still be loading). A container the last test throttled may still be marked
    unhealthy for one more healthcheck interval, which `up --wait` would take as a failure."""
    services = services or SERVICES
    stack.compose("up", "--detach", *services)
    for service in services:
        container = stack.container(service)
        wait_until(lambda c=container: health(c) == "healthy", 120, f"{service} healthy", interval=0.5)
    if "foundry-local" in services:
        wait_model_served(stack)
    elif "chat-app" in services:
        stack.wait_chat_ready(TINY_MODEL, timeout=120)


def chat(stack: Stack, text: str, settings: dict | None = None, fault: Callable[[], None] | None = None) -> Reply:
    """A new session asks one question; `fault` runs (in a thread) once the answer's first token is in."""
    on_first_token: Callable[[], Awaitable[None]] | None = None
    if fault is not None:
        injected = fault

        async def on_first_token() -> None:
            await asyncio.to_thread(injected)

    chosen = {"model": TINY_MODEL, **settings} if settings else None
    return asyncio.run(converse(stack.url("chat-app"), text, chosen, on_first_token))


def assert_answers_again(stack: Stack, text: str) -> None:
    """Recovered: the chat service sees the model again and a new session gets an answer from it."""
    stack.wait_chat_ready(TINY_MODEL)
    reply = chat(stack, text)
    assert TINY_MODEL in reply.final_text(), reply.events


def wait_restarted_by_docker(container: str, restarts: int, timeout: float = 90) -> None:
    """The container's restart policy (not a test, not an operator) started it again, and it is healthy."""
    wait_until(lambda: inspect(container)["RestartCount"] > restarts, 60, "Docker restarting the crashed service")
    wait_until(lambda: health(container) == "healthy", timeout, "healthy again after the restart")


def wait_model_served(stack: Stack, timeout: float = 120) -> None:
    """The embedded service's own /readyz is 200: its model is loaded (healthy only means it runs); then the router
    and the chat see it. The chat's last read of the router may predate a crash and still list the model."""

    def served() -> bool:
        try:
            return httpx.get(f"{stack.url('foundry-local')}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(served, timeout, "the embedded model served again", interval=0.5)
    wait_until(lambda: TINY_MODEL in stack.router_models(), timeout, "the router serving it again", interval=0.5)
    stack.wait_chat_ready(TINY_MODEL, timeout=timeout)


def assert_interrupted_and_kept(reply: Reply, why: str) -> None:
    """The partial answer stays in the chat, marked as interrupted, with the reason and what to do."""
    final = reply.final_text()
    assert reply.streamed_text.strip(), reply.events
    assert final.startswith(reply.streamed_text), "the streamed part of the answer is kept"
    assert "**[interrupted]**" in final, final
    assert why in final, final


# --- the embedded service absent, then started -------------------------------------------------------------------


def test_chat_starts_without_the_embedded_service_and_picks_it_up_when_it_starts(faults: Stack) -> None:
    faults.compose("stop", "foundry-local", check=False)
    faults.compose("up", "--detach", "--wait", "--no-deps", "router", "chat-app")
    readyz = httpx.get(f"{faults.url('chat-app')}/readyz", timeout=5)
    assert readyz.status_code == 503
    assert "start Foundry Local" in readyz.json()["message"]
    (upstream,) = readyz.json()["upstreams"]
    assert upstream["state"] == "down" and "foundry-local does not resolve" in upstream["error"]
    before = faults.chat_metric(MESSAGES, outcome="failed")

    async def session() -> tuple[Reply, Reply, Reply]:
        async with connected(faults.url("chat-app")) as client:
            unanswered = await client.ask("Are you there?")
            await asyncio.to_thread(up, faults, "foundry-local")
            await asyncio.to_thread(faults.wait_chat_ready, TINY_MODEL)
            # The same session, never reloaded: the model appears in its settings, and it answers.
            return client.started, unanswered, await client.ask("Are you there now?")

    start, unanswered, answered = asyncio.run(session())
    assert any("No model is reachable right now" in text for text in start.texts()), start.events
    assert "**Could not answer.**" in unanswered.final_text(), unanswered.events
    assert "Your message was kept" in unanswered.final_text()
    assert faults.chat_metric(MESSAGES, outcome="failed") == before + 1
    assert answered.streamed_text.strip(), answered.events
    assert TINY_MODEL in answered.final_text()


# --- the embedded service killed, crashed, disconnected, paused, restarted -----------------------------------------


def test_docker_kill_mid_stream_keeps_the_partial_answer(faults: Stack) -> None:
    up(faults)
    foundry = faults.container("foundry-local")
    before = (
        faults.chat_metric(MESSAGES, outcome="interrupted"),
        faults.router_metric(OPERATIONS, error_type="connection"),
    )
    with throttled(foundry, SLOW_CPUS):
        reply = chat(faults, "Tell me a long story", settings=LONG_ANSWER, fault=lambda: docker("kill", foundry))
    assert_interrupted_and_kept(reply, "could not be reached or closed the connection")
    assert faults.chat_metric(MESSAGES, outcome="interrupted") == before[0] + 1
    assert faults.router_metric(OPERATIONS, error_type="connection") == before[1] + 1
    assert httpx.get(f"{faults.url('router')}/readyz", timeout=5).status_code == 503, "the upstream is marked down"
    # Docker never restarts a container an operator killed: `docker compose up -d` (docs/reliability.md) brings it back.
    assert inspect(foundry)["State"]["Status"] == "exited"
    up(faults)
    assert_answers_again(faults, "And now?")


def test_crash_mid_stream_recovers_by_itself(faults: Stack) -> None:
    up(faults)
    foundry = faults.container("foundry-local")
    restarts = inspect(foundry)["RestartCount"]
    before = faults.chat_metric(MESSAGES, outcome="interrupted")
    with throttled(foundry, SLOW_CPUS):
        reply = chat(faults, "Tell me a long story", settings=LONG_ANSWER, fault=lambda: crash(foundry))
    assert_interrupted_and_kept(reply, "could not be reached or closed the connection")
    assert faults.chat_metric(MESSAGES, outcome="interrupted") == before + 1
    # The restart policy brings the runtime back, healthy, with no one doing anything.
    wait_restarted_by_docker(foundry, restarts)
    wait_model_served(faults)
    assert_answers_again(faults, "Back?")


def test_network_disconnect_mid_stream_times_out_and_recovers(faults: Stack) -> None:
    up(faults)
    foundry = faults.container("foundry-local")
    before = faults.router_metric(OPERATIONS, error_type="timeout")

    def disconnect() -> None:
        docker("network", "disconnect", faults.network, foundry)

    try:
        with throttled(foundry, SLOW_CPUS):
            reply = chat(faults, "Tell me a long story", settings=LONG_ANSWER, fault=disconnect)
    finally:
        docker("network", "connect", "--alias", "foundry-local", faults.network, foundry, check=False)
    # Nothing more arrives on the dead connection: the read timeout ends the answer, and says which setting.
    assert_interrupted_and_kept(reply, f"sent nothing for {TIMEOUT_SECONDS} s (REQUEST_TIMEOUT_SECONDS)")
    assert faults.router_metric(OPERATIONS, error_type="timeout") == before + 1
    assert_answers_again(faults, "Reconnected?")


def test_an_upstream_that_hangs_is_a_timeout_and_a_slow_one_is_fine(faults: Stack) -> None:
    up(faults)
    foundry = faults.container("foundry-local")
    before = faults.chat_metric(MESSAGES, outcome="failed")
    # Frozen: connections are accepted by the kernel, but nothing answers.
    docker("pause", foundry)
    try:
        reply = chat(faults, "Hello?")
    finally:
        docker("unpause", foundry)
    final = reply.final_text()
    assert "**Could not answer.**" in final, reply.events
    assert f"sent nothing for {TIMEOUT_SECONDS} s (REQUEST_TIMEOUT_SECONDS)" in final
    assert "raise REQUEST_TIMEOUT_SECONDS" in final
    assert faults.chat_metric(MESSAGES, outcome="failed") == before + 1
    faults.wait_chat_ready(TINY_MODEL)
    # Slow but steady (a tenth of a CPU): every wait stays under the timeout, so the answer completes.
    with throttled(foundry, SLOW_CPUS):
        slow = chat(faults, "Take your time", settings={"max_tokens": 64})
    assert "[interrupted]" not in slow.final_text() and TINY_MODEL in slow.final_text(), slow.events


def test_restarted_embedded_service_serves_again_without_touching_the_chat(faults: Stack) -> None:
    up(faults)
    chat_started = inspect(faults.container("chat-app"))["State"]["StartedAt"]
    faults.compose("restart", "foundry-local")
    up(faults, "foundry-local")  # `restart` returns before the service is healthy again
    assert_answers_again(faults, "After the restart")
    assert inspect(faults.container("chat-app"))["State"]["StartedAt"] == chat_started


# --- the chat service crashed ---------------------------------------------------------------------------------------


def test_crashed_chat_service_is_restarted_healthy(faults: Stack) -> None:
    up(faults)
    service = faults.container("chat-app")
    restarts = inspect(service)["RestartCount"]

    async def crash_while_connected() -> None:
        client = ChainlitClient(faults.url("chat-app"))
        await client.connect()
        disconnected = asyncio.Event()
        client.sio.on("disconnect", disconnected.set)
        await asyncio.to_thread(crash, service)
        await asyncio.wait_for(disconnected.wait(), 30)  # TimeoutError: the connection outlived the crash

    # The browser's connection drops (Chainlit's page then says it is reconnecting)...
    asyncio.run(crash_while_connected())
    # ...and the restart policy brings the service back, healthy: a new session chats.
    wait_restarted_by_docker(service, restarts)
    assert_answers_again(faults, "Still here?")


# --- Open WebUI crashed (the shared stack: its accounts and chats) --------------------------------------------------


def test_crashed_open_webui_comes_back_with_accounts_and_chats(stack: Stack, webui_token: str) -> None:
    title = f"kept across a crash {uuid.uuid4().hex[:6]}"
    chat_body = {"title": title, "models": [TINY_MODEL], "messages": [], "history": {"messages": {}}}
    with webui(stack, webui_token) as http:
        created = http.post("/api/v1/chats/new", json={"chat": chat_body})
        assert created.status_code == 200, created.text
    container = stack.container("open-webui")
    restarts = inspect(container)["RestartCount"]
    crash(container)
    wait_restarted_by_docker(container, restarts, timeout=240)
    with httpx.Client(base_url=stack.url("open-webui"), timeout=60) as http:
        signin = http.post("/api/v1/auths/signin", json={"email": ADMIN["email"], "password": ADMIN["password"]})
        assert signin.status_code == 200, signin.text
    with webui(stack, signin.json()["token"]) as http:
        kept = http.get(f"/api/v1/chats/{created.json()['id']}")
        assert kept.status_code == 200 and kept.json()["chat"]["title"] == title
