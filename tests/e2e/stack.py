"""The Compose stack (compose.yaml + compose.offline.yaml) driven through the docker compose CLI.

Every test stack gets its own project name and free published ports, so it never clashes with a developer's
running stack. Images are built once per session (`docker compose build`, BuildKit layer cache); stacks only
start and stop containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.logs import register
from tests.support.process import CHAT_MODEL_ID, CHAT_MODEL_NAME, REPO, free_port, metric_sum, wait_until

COMPOSE_FILES = ("compose.yaml", "compose.offline.yaml")
# Published port variable of each service (compose.yaml) and the service's own name.
PORT_VARIABLES = {
    "router": "ROUTER_PORT",
    "chat-app": "CHAT_APP_PORT",
    "open-webui": "OPEN_WEBUI_PORT",
    "webgpu-static": "WEBGPU_STATIC_PORT",
    "prometheus": "PROMETHEUS_PORT",
    "foundry-local": "FOUNDRY_GATEWAY_PORT",
}
# The real model as the embedded service serves it (compose.offline.yaml).
EMBEDDED_MODEL = CHAT_MODEL_ID
# The random tiny model, for tests that need what a real model cannot give on two cores: answers in milliseconds
# under load, and streams that run to max_tokens (to cut one mid-way). Each test that uses it says so.
# The host's Foundry Local (another process) serves it under an id of its own, so that a test can tell which runtime
# answered, and the load test (test_load.py) asks it.
HOST_MODEL = "tiny-host-generic-cpu:1"
TINY_MODEL_NAME = "tiny-chat"
TINY_MODEL = f"{TINY_MODEL_NAME}-generic-cpu:1"
# The Swarm tier serves the tiny model: its load, scale and failover tests need both of the above.
SWARM_MODEL = TINY_MODEL
# The first account signed up on Open WebUI (it becomes the admin).
ADMIN = {"name": "Admin", "email": "admin@example.test", "password": "correct horse battery staple"}
# Runs to completion at every `up`, before the services that read what it writes (the stack's secrets,
# foundry_common/network_lock.py): exited with 0, never running.
ONE_SHOT_SERVICES = {"secrets"}
OFFLINE_SERVICES = {
    "foundry-local",
    "router",
    "chat-app",
    "open-webui",
    "webgpu-static",
    "prometheus",
    "blackbox-exporter",
}


def compose(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    project: str = "",
    files: tuple[str, ...] = COMPOSE_FILES,
) -> subprocess.CompletedProcess[str]:
    command = ["docker", "compose"]
    if project:
        command += ["--project-name", project]
    for name in files:
        command += ["--file", str(REPO / name)]
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker compose {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-5000:]}"
        )
    return result


@dataclass
class Stack:
    """One Compose project of the offline stack, with its own ports."""

    project: str
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    startup_seconds: list[float] = field(default_factory=list)
    files: tuple[str, ...] = COMPOSE_FILES

    @classmethod
    def create(cls, project: str, extra_files: tuple[str, ...] = (), **env: str) -> Stack:
        """A project with its own ports; `extra_files` (paths from the repository root) go after the two files."""
        ports = {service: free_port() for service in PORT_VARIABLES}
        # BIND_ADDRESS is left to the committed .env, as for a user: test_security.py checks where ports land.
        full_env = {
            "COMPOSE_PROFILES": "embedded",
            **{PORT_VARIABLES[service]: str(port) for service, port in ports.items()},
            **env,
        }
        stack = cls(project=project, env=full_env, ports=ports, files=COMPOSE_FILES + tuple(extra_files))
        register(stack)
        return stack

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        return compose(*args, env=self.env, timeout=timeout, check=check, project=self.project, files=self.files)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def up(self, *services: str, timeout: int = 300) -> float:
        """`up -d --wait` of `services` (all when none; images already built), then the router serving the models
        the stack must serve (`expected_models`); returns and records the seconds until then.

        `up --wait` waits for healthy, and the embedded service is healthy while it runs, before its model is loaded
        (a download must hold up nothing): a test that uses the model right after `up` would race its loading."""
        started = time.monotonic()
        result = self.compose("up", "--detach", "--wait", "--wait-timeout", str(timeout), *services, check=False)
        if result.returncode != 0:
            raise AssertionError(
                f"the stack did not become healthy in {timeout}s:\n{result.stderr[-3000:]}\n{self.logs()}"
            )
        if expected := self.expected_models(services):
            wait_until(lambda: expected <= self.router_models(), timeout, f"the router serving {sorted(expected)}", 0.5)
        elapsed = time.monotonic() - started
        self.startup_seconds.append(elapsed)
        return elapsed

    def expected_models(self, services: tuple[str, ...] = ()) -> set[str]:
        """The embedded model, when the router is started with the embedded service serving a local folder (the
        offline overlay's; it loads in seconds). Not a model from FOUNDRY_MODEL_URL, which may be held on purpose
        (test_first_run.py), nor when the router is not among `services` or not told of the embedded service."""
        if "embedded" not in self.env.get("COMPOSE_PROFILES", "").split(","):
            return set()
        if (services and "router" not in services) or self.env.get("FOUNDRY_MODEL_URL"):
            return set()
        if "foundry-local" not in self.env.get("FOUNDRY_LOCAL_URLS", "foundry-local"):  # unset: the default list has it
            return set()
        name = self.env.get("OFFLINE_MODEL_NAME") or CHAT_MODEL_NAME
        return {self.env.get("FOUNDRY_MODEL_ID") or f"{name}-generic-cpu:1"}

    def router_models(self) -> set[str]:
        """The models the router's /readyz lists (none while it does not answer)."""
        try:
            return set(httpx.get(f"{self.url('router')}/readyz", timeout=5).json().get("models") or ())
        except (httpx.HTTPError, ValueError):
            return set()

    def down(self, volumes: bool = False) -> None:
        args = ["down", "--timeout", "20", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        self.compose(*args, timeout=300)

    def ps(self) -> list[dict]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        if not out:
            return []
        # Compose prints one JSON object per line (older versions: one array).
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def log(self) -> str:
        """The end of every service's log (tests/support/logs.py attaches it to a failure)."""
        return self.logs(tail=40)

    def logs(self, tail: int = 80) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), check=False).stdout[-20000:]

    def container(self, service: str) -> str:
        """The id of the service's container (running or not)."""
        container = self.compose("ps", "--all", "--quiet", service).stdout.strip()
        assert container, f"{service} has no container in {self.project}"
        return container

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def wait_chat_ready(self, model: str | None = None, timeout: float = 60) -> None:
        """The chat service's /readyz is 200, with `model` among the loaded models when one is named."""

        def ready() -> bool:
            response = httpx.get(f"{self.url('chat-app')}/readyz", timeout=5)
            return response.status_code == 200 and (model is None or model in response.json()["models"])

        wait_until(ready, timeout, f"the chat service ready with {model or 'a model'}", interval=0.5)

    def router_metric(self, name: str, **labels: str) -> float:
        """The router's metric, summed over the samples with these labels."""
        return metric_sum(httpx.get(f"{self.url('router')}/metrics", timeout=5).text, name, **labels)

    def chat_metric(self, name: str, **labels: str) -> float:
        """The chat service's metric, summed over the samples with these labels."""
        return metric_sum(httpx.get(f"{self.url('chat-app')}/metrics", timeout=5).text, name, **labels)

    def http(self, service: str) -> httpx.Client:
        return httpx.Client(base_url=self.url(service), timeout=60)


def write_timings(artifacts: Path, name: str, stack: Stack, **extra: float) -> None:
    """Leave the measured start-up times for the issue's closing note."""
    path = artifacts / "e2e-timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[name] = {"up_to_healthy_seconds": [round(s, 1) for s in stack.startup_seconds], **extra}
    path.write_text(json.dumps(timings, indent=2) + "\n")


def webui(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url("open-webui"), headers={"Authorization": f"Bearer {token}"}, timeout=60)
