"""A second Swarm node on this one machine: Debian's Docker engine in a container, joined to the test swarm as a
worker and labelled a model node, with the model service's image and the tiny model loaded into it.

Not --privileged: this machine's capability bounding set lacks CAP_SYS_RESOURCE, and runc then refuses a
privileged container ("unable to apply caps"). Every other capability, no seccomp or AppArmor profile and a
writable cgroup tree are enough for the nested engine, its containers and its overlay (VXLAN) network.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker import docker
from tests.support.process import REPO, wait_until

IMAGE = "foundry-stack/test-swarm-node:dev"
MODEL_IMAGE = "foundry-stack/foundry-local:dev"


@dataclass
class Node:
    container: str
    node_id: str
    address: str

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI of the node's own engine."""
        return docker("exec", self.container, "docker", *args, timeout=timeout, check=check)


def manager_address() -> str:
    return json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)["NodeAddr"]


def load_image(container: str, image: str) -> None:
    """`docker save` here, `docker load` in the node: the node has no registry to pull from."""
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        subprocess.run(
            ["docker", "exec", "-i", container, "docker", "load", "--quiet"],
            stdin=save.stdout,
            check=True,
            capture_output=True,
            timeout=300,
        )
    assert save.returncode == 0, f"docker save {image} failed"


@contextmanager
def second_node(name: str, tiny_model: Path) -> Iterator[Node]:
    """The node, joined and labelled foundry.model=true; on the way out it leaves, is removed, and so is its data."""
    manager = manager_address()
    assert not manager.startswith("127."), (
        f"the swarm advertises {manager}: a node in a container cannot reach it. The tests start their own swarm on "
        "the Docker bridge's address; leave this engine's swarm first (scripts/swarm-down)."
    )
    docker("build", "--quiet", "--tag", IMAGE, str(REPO / "tests" / "swarm" / "node"), timeout=600)
    volume = f"{name}-docker"
    container = docker(
        "run", "--detach", "--name", name, "--hostname", name,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined",
        "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--volume", f"{volume}:/var/lib/docker",
        # The offline stack bind-mounts the tiny model from this path on every model node.
        "--volume", f"{tiny_model}:{tiny_model}:ro",
        "--tmpfs", "/run", IMAGE,
    ).stdout.strip()  # fmt: skip
    node_id = ""
    try:
        wait_until(
            lambda: docker("exec", container, "docker", "info", check=False, timeout=30).returncode == 0,
            60,
            "the second node's Docker engine",
            interval=0.5,
        )
        address = docker("inspect", container, "--format", "{{.NetworkSettings.IPAddress}}").stdout.strip()
        node = Node(container, "", address)
        load_image(container, MODEL_IMAGE)
        token = docker("swarm", "join-token", "--quiet", "worker").stdout.strip()
        node.docker("swarm", "join", "--token", token, "--advertise-addr", address, f"{manager}:2377")
        node_id = node.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        node.node_id = node_id
        docker("node", "update", "--label-add", "foundry.model=true", node_id)
        yield node
    finally:
        docker("exec", container, "docker", "swarm", "leave", "--force", check=False, timeout=60)
        if node_id:
            wait_until(
                lambda: json.loads(docker("node", "inspect", node_id).stdout)[0]["Status"]["State"] == "down",
                60,
                "the second node seen as down",
                interval=0.5,
            )
            docker("node", "rm", "--force", node_id, check=False)
        docker("rm", "--force", "--volumes", container, check=False)
        docker("volume", "rm", volume, check=False)
