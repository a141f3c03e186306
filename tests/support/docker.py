"""The real Docker engine through its CLI: build the project's images from the local base, run them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.process import REPO, wait_until

OFFLINE_PYTHON_BASE = "foundry-stack/python:3.11-slim"


def docker(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def require_docker() -> None:
    """Fail (never skip) with what to do when the engine or the local base image is missing."""
    if docker("info", check=False, timeout=30).returncode != 0:
        pytest.fail("no Docker engine is reachable: run scripts/install-prerequisites (it starts dockerd).")
    if docker("image", "inspect", OFFLINE_PYTHON_BASE, check=False).returncode != 0:
        pytest.fail(f"base image {OFFLINE_PYTHON_BASE} is missing: run scripts/build-offline-base.")


def build_image(context: str, tag: str) -> str:
    docker("build", "--tag", tag, "--build-arg", f"BASE_IMAGE={OFFLINE_PYTHON_BASE}", str(REPO / context))
    return tag


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def health(container: str) -> str:
    state = inspect(container)["State"]
    return state.get("Health", {}).get("Status", state["Status"])


def published_port(container: str, port: int) -> int:
    binding = inspect(container)["NetworkSettings"]["Ports"][f"{port}/tcp"][0]
    return int(binding["HostPort"])


@contextmanager
def running_container(*run_args: str) -> Iterator[tuple[str, float]]:
    """`docker run --detach RUN_ARGS`: yields (name, seconds until its healthcheck settled); removed at the end."""
    started = time.monotonic()
    name = docker("run", "--detach", *run_args).stdout.strip()
    try:
        wait_until(lambda: health(name) in {"healthy", "unhealthy", "exited"}, 60, "the container's health")
        yield name, time.monotonic() - started
    finally:
        docker("rm", "--force", "--volumes", name, check=False)
