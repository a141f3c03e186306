"""scripts/swarm-up when the edge cannot run: host ports it publishes are held by something else (a Compose stack of
this project, most often). Swarm then places its global task nowhere (0/0) and says so only in its tasks' errors, so
swarm-up must fail, naming each port and what holds it, not print the URLs of a stack nobody reaches.

The module's stack is reused: swarm-up runs again with two of the edge's ports moved onto ports held by a plain
container and by this process, then with the ports freed and the stack's own variables, which must bring the edge
back. pytest runs this module after the others but before test_teardown.py (alphabetical order).
"""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.support.docker import docker
from tests.support.process import free_port
from tests.support.swarm import SwarmStack

pytestmark = pytest.mark.e2e


def test_swarm_up_fails_naming_the_taken_ports_and_what_holds_them(swarm: SwarmStack) -> None:
    chat_port, router_port = free_port(), free_port()
    holder = f"{swarm.name}-port-holder"
    image = docker(
        "service", "inspect", swarm.service("edge"), "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
    ).stdout.strip()
    docker("run", "--detach", "--name", holder, "--publish", f"{chat_port}:8080",
           "--entrypoint", "sleep", image, "infinity")  # fmt: skip
    # Every address, as the edge's host-mode ports are.
    listener = socket.create_server(("0.0.0.0", router_port))
    try:
        result = swarm.script(
            "swarm-up", "--offline", "--no-build", "--timeout", "300",
            check=False, CHAT_APP_PORT=str(chat_port), ROUTER_PORT=str(router_port),
        )  # fmt: skip
    finally:
        listener.close()
        docker("rm", "--force", holder, check=False)
    assert result.returncode != 0, f"swarm-up succeeded with the edge's ports taken:\n{result.stdout}"
    assert "is up" not in result.stdout, result.stdout
    said = result.stderr
    assert f"{swarm.service('edge')} cannot start" in said, said
    assert f"Port {chat_port} (CHAT_APP_PORT) is held by the container {holder}" in said, said
    assert f"Port {router_port} (ROUTER_PORT) is held by a process" in said, said
    assert f"pid={os.getpid()}," in said, f"the process holding the port is named:\n{said}"
    assert "docker compose down" in said and "CHAT_APP_PORT=ANOTHER_PORT" in said, f"what to do:\n{said}"

    # The ports free and the stack's own variables again: the edge runs on its ports once more.
    swarm.script("swarm-up", "--offline", "--no-build", "--timeout", "300")
    assert swarm.running_tasks("edge") == 1
    assert httpx.get(f"{swarm.url('router')}/v1/models", timeout=10).status_code == 401, "the router, behind its key"
