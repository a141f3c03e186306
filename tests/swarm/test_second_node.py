"""A second node joins the swarm as a model node (tests/support/swarm_node.py: a Docker engine in a container): Swarm
starts a model service on it by itself (`mode: global`, placed by the node label), the routers find it through DNS
and send it requests, over the overlay network between the two engines; when it leaves, they stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.process import wait_until
from tests.support.swarm import PROBE_INTERVAL_SECONDS, SwarmStack, upstreams_serving, where_answered
from tests.support.swarm_node import second_node

pytestmark = pytest.mark.e2e


def model_upstreams(swarm: SwarmStack) -> list[set[str]]:
    """Each router replica's model-task upstreams that serve the model now."""
    return [
        {u for u in upstreams_serving(swarm, router) if u.startswith("tasks.foundry-local")}
        for router in swarm.containers("router")
    ]


def test_a_second_model_node_gets_a_model_service_and_the_routers_use_both(swarm: SwarmStack, tiny_model: Path) -> None:
    swarm.wait_tasks("foundry-local", 1)
    with second_node(f"{swarm.name}-node2", tiny_model) as node:
        # The global service's second task, on the new node: running and healthy there.
        wait_until(lambda: swarm.running_tasks("foundry-local") == 2, 240, "a model task on the second node", 1)
        assert node.docker("ps", "--quiet", "--filter", "label=com.docker.swarm.service.name="
                           f"{swarm.service('foundry-local')}").stdout.strip()  # fmt: skip
        wait_until(
            lambda: all(len(found) == 2 for found in model_upstreams(swarm)),
            PROBE_INTERVAL_SECONDS + 30,
            "every router serving the model from both nodes",
            interval=0.5,
        )
        (both,) = {frozenset(found) for found in model_upstreams(swarm)}
        used = set(where_answered(swarm, 16))
        assert used == set(both), f"requests went to {used}, not to both nodes' tasks {set(both)}"
    wait_until(
        lambda: all(len(found) == 1 for found in model_upstreams(swarm)),
        PROBE_INTERVAL_SECONDS + 30,
        "every router back to the first node's model task only",
        interval=0.5,
    )
