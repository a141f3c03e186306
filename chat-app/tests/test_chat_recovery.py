"""The embedded runtime goes away and comes back: the chat service notices, says so, and recovers by itself."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from chat_support import ask_once, start_chat

from tests.support.process import start_gateway, wait_until

pytestmark = pytest.mark.integration


def test_upstream_stops_and_comes_back_without_a_restart(tiny_model: Path, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "data", tmp_path / "gateway-1.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    chat = None
    try:
        gateway.wait_for_state({"ready"})
        # A healthy upstream is re-probed only every 30 s here: noticing the outage is up to the failed request.
        chat = start_chat(tmp_path, [f"{gateway.url}/v1"], PROBE_INTERVAL_SECONDS="30", PROBE_MAX_BACKOFF_SECONDS="2")
        chat.wait_healthy()
        assert chat.readyz_status() == 200
        assert ask_once(chat.url, "before").streamed_text

        gateway.stop()
        reply = ask_once(chat.url, "during")
        answer = reply.final_text()
        name = gateway.url.removeprefix("http://")
        assert "Could not answer" in answer
        assert f"{name} could not be reached" in answer  # which upstream, what failed
        assert "Check that it is running" in answer  # what to do
        assert "Traceback" not in answer
        wait_until(lambda: chat.readyz_status() == 503, 5, "/readyz 503 once the upstream is gone")
        assert chat.get("/readyz").json()["upstreams"][0]["state"] == "down"
        assert chat.metric("chat_upstream_up") == 0

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
