from __future__ import annotations

from collections.abc import Iterator

import pytest
from chat_support import ChatProcess, start_chat

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
