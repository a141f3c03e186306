"""Fixtures of the Swarm tier: one stack for every module, deployed by scripts/swarm-up (offline) on a single-node
swarm, as a user would, and removed by scripts/swarm-down (test_teardown.py checks it leaves nothing).

This folder runs after tests/e2e (pytest takes folders in order), whose Compose stacks are down by then: leaving a
swarm breaks service-name DNS in Compose containers that are still running (shared/ENVIRONMENT.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import SWARM_MODEL, TINY_MODEL_NAME
from tests.support.docker import bridge_gateway
from tests.support.process import free_port
from tests.support.swarm import PROBE_INTERVAL_SECONDS, SwarmStack, swarm_state


@pytest.fixture(scope="package")
def twin_port() -> int:
    """Where a second model runtime on the host (the embedded model's id) answers while a test runs it: the
    routers know it from the start, as an upstream that is down until then."""
    return free_port()


@pytest.fixture(scope="package")
def swarm(
    offline_images: float, tiny_model: Path, twin_port: int, artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmStack]:
    stack = SwarmStack.create(
        f"fs-swarm-{uuid.uuid4().hex[:6]}",
        tmp_path_factory.mktemp("swarm") / "secrets",
        # The tiny model (tests/e2e/stack.py SWARM_MODEL says why).
        OFFLINE_MODEL_DIR=str(tiny_model),
        OFFLINE_MODEL_NAME=TINY_MODEL_NAME,
        # A swarm on the Docker bridge's address, which a second node in a container reaches (test_second_node.py).
        SWARM_ADVERTISE_ADDR=bridge_gateway(),
        SWARM_FOUNDRY_LOCAL_URLS=(f"http://tasks.foundry-local:5273/v1,http://host.docker.internal:{twin_port}/v1"),
        PROBE_INTERVAL_SECONDS=str(PROBE_INTERVAL_SECONDS),
        MODEL=SWARM_MODEL,
        MAX_TOKENS="24",
        # The chat's prompts in its log: a resumed thread's earlier turns must reach the model.
        LOG_PROMPTS="true",
    )
    stack.swarm_was = swarm_state()
    try:
        stack.up()
        yield stack
    finally:
        if not stack.removed:  # test_teardown.py removes it, after saving the logs
            try:
                stack.save_logs(artifacts)
            finally:
                stack.down()
