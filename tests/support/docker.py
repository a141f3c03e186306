"""The real Docker engine through its CLI: build the project's images from the local base, run them."""

from __future__ import annotations

import json
import os
import re
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


def build_image(service: str, tag: str) -> str:
    """SERVICE/Dockerfile built as compose.yaml builds it: from the repository root, for the shared common/."""
    dockerfile = str(REPO / service / "Dockerfile")
    docker("build", "--tag", tag, "--build-arg", f"BASE_IMAGE={OFFLINE_PYTHON_BASE}", "--file", dockerfile, str(REPO))
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


# Kills every child of the container's init (the service itself) from inside the container.
_CRASH = """
import os, signal
for pid in filter(str.isdigit, os.listdir('/proc')):
    with open(f'/proc/{pid}/stat') as stat:
        parent = stat.read().rsplit(')', 1)[1].split()[1]
    if parent == '1' and int(pid) != os.getpid():
        os.kill(int(pid), signal.SIGKILL)
"""


def crash(container: str) -> None:
    """SIGKILL the container's service process, as a crash or the kernel's OOM killer would. Unlike `docker kill`
    (an operator's stop, which Docker never undoes), this leaves the container's restart policy in charge."""
    # The exec itself may die with the container (exit 137): the callers check the restart instead.
    docker("exec", container, "python", "-c", _CRASH, timeout=30, check=False)


@contextmanager
def throttled(container: str, cpus: float) -> Iterator[None]:
    """Limit a running container to a fraction of a CPU: a slow machine, and answers that stream for seconds."""
    docker("update", "--cpus", str(cpus), container)
    try:
        yield
    finally:
        # `--cpus 0` does not lift a limit; every CPU of the machine does.
        docker("update", "--cpus", str(os.cpu_count() or 1), container, check=False)


def bridge_gateway() -> str:
    """This machine's address on Docker's default bridge, which containers reach it by (as host-gateway does).

    Read from the interface: the bridge network's IPAM config does not always name its gateway (seen here on
    20.10, once the engine had been in a swarm)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert found, f"no IPv4 address on docker0 (is the Docker engine running?): {out!r}"
    return found.group(1)
