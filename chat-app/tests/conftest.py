from __future__ import annotations

from collections.abc import Iterator

import pytest
from chat_support import ChatProcess, PacedUpstream, chat_in_front_of, start_paced_upstream

from tests.support.process import GatewayProcess


@pytest.fixture(scope="module")
def chat(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """The chat service in front of the gateway (the tiny model: fast, and its answers run to max_tokens); prompts are
    logged so that tests can see what went upstream. Modules that read the answers' meaning override it with
    `real_model_chat`."""
    with chat_in_front_of(gateway, tmp_path_factory.mktemp("chat")) as service:
        yield service


@pytest.fixture(scope="module")
def real_model_chat(chat_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """The chat service (and its router) in front of the real model (SmolLM2-135M-Instruct), so that answers can be
    checked; one per module."""
    with chat_in_front_of(chat_gateway, tmp_path_factory.mktemp("chat")) as service:
        yield service


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    """A quick paced upstream (tests/support/paced_upstream.py): 5 ms to the first token, then one per 2 ms."""
    upstream = start_paced_upstream(first_token_ms=5, token_interval_ms=2)
    try:
        yield upstream
    finally:
        upstream.stop()
