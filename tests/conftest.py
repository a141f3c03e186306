"""Fixtures of the tiers that run the stack in Docker (tests/e2e: Compose; tests/swarm: Swarm): the offline images,
built once per session."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.e2e.stack import compose
from tests.support.docker import docker, require_docker
from tests.support.process import REPO

# The chat service's Socket.IO client (Chainlit's protocol) lives beside the chat service's own tests.
CHAT_TESTS = REPO / "chat-app" / "tests"
if str(CHAT_TESTS) not in sys.path:
    sys.path.insert(0, str(CHAT_TESTS))

OFFLINE_DEBIAN_BASE = "foundry-stack/debian:bookworm"
TORCH_WHEEL_DIRS = (Path("/opt/wheels"),)


def provide_torch_wheel() -> None:
    """Open WebUI's offline build uses a CPU torch wheel from open-webui/wheels/ when there is one (else pip
    would fetch PyPI's CUDA build, GBs): link this machine's wheel there, without copying it."""
    target = REPO / "open-webui" / "wheels"
    for folder in TORCH_WHEEL_DIRS:
        for wheel in folder.glob("torch-*+cpu-*.whl"):
            link = target / wheel.name
            if not link.exists():
                try:
                    link.hardlink_to(wheel)
                except OSError:
                    link.symlink_to(wheel)


@pytest.fixture(scope="session")
def offline_images(tiny_model: Path, artifacts: Path) -> float:
    """Build every image of the offline stack once (cached by Docker's layer cache); returns the seconds taken."""
    require_docker()
    if docker("image", "inspect", OFFLINE_DEBIAN_BASE, check=False).returncode != 0:
        pytest.fail(f"base image {OFFLINE_DEBIAN_BASE} is missing: run scripts/build-offline-base.")
    provide_torch_wheel()
    started = time.monotonic()
    compose("build", env={"COMPOSE_PROFILES": "embedded,edge"}, timeout=2400)
    elapsed = time.monotonic() - started
    (artifacts / "e2e-image-build-seconds.txt").write_text(f"{elapsed:.1f}\n")
    return elapsed
