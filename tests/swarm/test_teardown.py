"""scripts/swarm-down --volumes after everything else (pytest runs this module last): nothing of the stack is left,
and the swarm is gone when scripts/swarm-up started it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docker import docker
from tests.support.swarm import SwarmStack, swarm_state

pytestmark = pytest.mark.e2e


def test_swarm_down_leaves_nothing_behind(swarm: SwarmStack, artifacts: Path) -> None:
    swarm.save_logs(artifacts)
    result = swarm.down()
    label = f"label=com.docker.stack.namespace={swarm.name}"
    assert docker("ps", "--all", "--quiet", "--filter", label).stdout.strip() == "", "containers left"
    assert docker("network", "ls", "--quiet", "--filter", label).stdout.strip() == "", "networks left"
    assert docker("volume", "ls", "--quiet", "--filter", label).stdout.strip() == "", "volumes left"
    assert not swarm.secrets_dir.exists(), "the generated secrets are deleted with the data"
    if swarm.swarm_was == "inactive":
        assert swarm_state() == "inactive", "swarm-up started the swarm, so swarm-down leaves it"
        assert "leaving the swarm" in result.stdout
    else:
        assert swarm_state() == "active", "a swarm that was there before stays"
        assert docker("service", "ls", "--quiet", "--filter", label).stdout.strip() == "", "services left"
