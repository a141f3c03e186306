from __future__ import annotations

from collections.abc import Iterator

import pytest
from chat_support import ChatProcess, PacedUpstream, start_chat, start_paced_upstream

from tests.support.process import GatewayProcess


@pytest.fixture(scope="module")
def chat(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """The chat service in front of the gateway; prompts are logged so that tests can see what went upstream."""
    tmp = tmp_path_factory.mktemp("chat")
    service = start_chat(tmp, [f"{gateway.url}/v1"], LOG_PROMPTS="true", MAX_INPUT_CHARS="500")
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    """A quick paced upstream (tests/support/paced_upstream.py): 5 ms to the first token, then one per 2 ms."""
    upstream = start_paced_upstream(first_token_ms=5, token_interval_ms=2)
    try:
        yield upstream
    finally:
        upstream.stop()
