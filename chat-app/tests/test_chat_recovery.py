"""The embedded runtime, or the router itself, goes away and comes back: the chat notices, says so, and recovers
by itself (no restart, no reload of the page)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path

import pytest
from chat_support import ask_once, connected, start_chat

from tests.support.process import start_gateway, wait_until
from tests.support.router import start_router

pytestmark = pytest.mark.integration


def test_upstream_stops_and_comes_back_without_a_restart(tiny_model: Path, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "data", tmp_path / "gateway-1.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    chat = None
    try:
        gateway.wait_for_state({"ready"})
        # The router re-probes a healthy upstream only every 30 s here: noticing the outage is up to the request.
        chat = start_chat(tmp_path, [f"{gateway.url}/v1"], PROBE_INTERVAL_SECONDS="30", PROBE_MAX_BACKOFF_SECONDS="2")
        chat.wait_healthy()
        assert chat.readyz_status() == 200
        assert ask_once(chat.url, "before").streamed_text

        gateway.stop()
        answer = ask_once(chat.url, "during").final_text()
        name = gateway.url.removeprefix("http://")
        # 502 (the upstream it tried failed) or 503 (none left to try): the router's choice, its words.
        assert re.match(r"\*\*Could not answer\.\*\* The router answered HTTP 50[23]: ", answer), answer
        assert name in answer  # which upstream, what failed (the router's words)
        assert "Your message was kept" in answer
        assert "Traceback" not in answer
        wait_until(lambda: chat.readyz_status() == 503, 5, "/readyz 503 once the upstream is gone")
        assert chat.get("/readyz").json()["upstreams"][0]["state"] == "down"
        assert chat.metric("chat_router_up") == 0

        port = name.rsplit(":", 1)[1]
        restarted = start_gateway(
            tmp_path / "data", tmp_path / "gateway-2.log", FOUNDRY_MODEL_PATH=str(tiny_model), PORT=port
        )
        gateway = dataclasses.replace(restarted, url=gateway.url)  # same address as before
        gateway.wait_for_state({"ready"})
        back = time.monotonic()
        wait_until(lambda: chat.readyz_status() == 200, 10, "/readyz 200 within 10 s of the upstream's return")
        assert time.monotonic() - back <= 10
        assert chat.proc.poll() is None, "the chat service was not restarted"
        assert ask_once(chat.url, "after").streamed_text
    finally:
        gateway.stop()
        if chat is not None:
            chat.stop()


def test_router_stops_and_comes_back_and_the_same_session_answers(tiny_model: Path, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "data", tmp_path / "gateway.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    chat = None
    try:
        gateway.wait_for_state({"ready"})
        chat = start_chat(tmp_path, [f"{gateway.url}/v1"])
        chat.wait_healthy()
        router = chat.router
        assert router is not None
        router_url = router.base_url

        async def session() -> tuple:
            # Connected while the router is up: the settings panel has the model.
            async with connected(chat.url) as client:
                before = await client.ask("before")
                router.stop()
                during = await client.ask("during")
                await asyncio.to_thread(wait_until, lambda: chat.readyz_status() == 503, 5, "/readyz 503")
                async with connected(chat.url) as newcomer:
                    start = newcomer.started
                port = router.url.rsplit(":", 1)[1]
                chat.router = await asyncio.to_thread(
                    start_router, tmp_path / "router-2", [f"{gateway.url}/v1"], ROUTER_PORT=port
                )
                await asyncio.to_thread(
                    wait_until, lambda: chat.readyz_status() == 200, 15, "/readyz 200 once the router is back"
                )
                return before, during, start, await client.ask("after")

        before, during, start, after = asyncio.run(session())
        assert before.streamed_text and after.streamed_text
        assert "Could not answer" not in after.final_text()
        answer = during.final_text()
        assert answer.startswith(f"**Could not answer.** The router at {router_url} could not be reached"), answer
        assert "docker compose up -d router" in answer and "Your message was kept" in answer
        notice = " ".join(start.texts())
        assert "No model is reachable right now" in notice and "once the router is back" in notice, notice
        assert f"the router at {router_url} is not reachable" in notice
        assert chat.metric('chat_messages_total{outcome="failed"}') == 1
        assert chat.metric("chat_router_up") == 1
        assert chat.proc.poll() is None, "the chat service was not restarted"
    finally:
        gateway.stop()
        if chat is not None:
            chat.stop()
