"""The Swarm stack (swarm/stack.yaml + swarm/stack.offline.yaml) brought up and down by scripts/swarm-up and
scripts/swarm-down, as a user would, and the docker CLI for what a test does to it: kill a task, scale, update.

Every test stack has its own stack name, published ports and secrets folder, so it never clashes with a
developer's stack. Everything is reached from outside through the edge, as a user would; what only the
containers see (a replica's own metrics) is read with `docker exec`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.stack import SWARM_MODEL
from tests.support.docker import docker
from tests.support.logs import register
from tests.support.process import REPO, free_port, metric_sum, wait_until

# How often the test stack's routers probe (and re-resolve tasks.foundry-local): "one probe interval" in the tests.
PROBE_INTERVAL_SECONDS = 2
# The edge's published port variable of each service behind it (swarm/stack.yaml).
PORT_VARIABLES = {
    "chat-app": "CHAT_APP_PORT",
    "router": "ROUTER_PORT",
    "open-webui": "OPEN_WEBUI_PORT",
    "webgpu-static": "WEBGPU_STATIC_PORT",
    "prometheus": "PROMETHEUS_PORT",
    "grafana": "GRAFANA_PORT",
}
# Where each service answers inside its containers (for `docker exec`).
INNER_PORTS = {"chat-app": 8080, "router": 4000, "foundry-local": 5273}
SERVICES = (
    "edge",
    "foundry-local",
    "router",
    "chat-app",
    "postgres",
    "open-webui",
    "webgpu-static",
    "prometheus",
    "blackbox-exporter",
    "grafana",
)


@dataclass
class SwarmStack:
    name: str
    env: dict[str, str]
    ports: dict[str, int]
    secrets_dir: Path
    startup_seconds: list[float] = field(default_factory=list)
    # The engine's swarm state before swarm-up (`inactive`: the script starts one, and swarm-down must leave it).
    swarm_was: str = ""
    removed: bool = False

    @classmethod
    def create(cls, name: str, secrets_dir: Path, **env: str) -> SwarmStack:
        ports = {service: free_port() for service in PORT_VARIABLES}
        full_env = {
            "STACK_NAME": name,
            "SWARM_SECRETS_DIR": str(secrets_dir),
            **{PORT_VARIABLES[service]: str(port) for service, port in ports.items()},
            **env,
        }
        stack = cls(name=name, env=full_env, ports=ports, secrets_dir=secrets_dir)
        register(stack)
        return stack

    # --- the scripts ------------------------------------------------------------------------------------------

    def script(
        self, name: str, *args: str, timeout: float = 1200, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """scripts/NAME ARGS with the stack's variables (and `env` over them); with `check`, a failure raises."""
        result = subprocess.run(
            [str(REPO / "scripts" / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, **self.env, **env},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"scripts/{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                f"{result.stderr[-4000:]}\n{self.log()}"
            )
        return result

    def up(self) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self.script("swarm-up", "--offline", "--timeout", "600")
        self.startup_seconds.append(time.monotonic() - started)
        return result

    def down(self) -> subprocess.CompletedProcess[str]:
        result = self.script("swarm-down", "--volumes", timeout=300)
        self.removed = True
        return result

    # --- from outside, through the edge -------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def router(self) -> httpx.Client:
        """An OpenAI client's view: the router through the edge, with the generated key."""
        key = self.secret("router_api_key")
        return httpx.Client(base_url=self.url("router"), headers={"Authorization": f"Bearer {key}"}, timeout=120)

    def prometheus(self, query: str) -> list[dict]:
        response = httpx.get(
            f"{self.url('prometheus')}/api/v1/query",
            params={"query": query},
            auth=("admin", self.secret("admin_password")),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["data"]["result"]

    # --- the services and their tasks -------------------------------------------------------------------------

    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    @property
    def network(self) -> str:
        return f"{self.name}_default"

    def containers(self, service: str) -> list[str]:
        """The running containers of the service's tasks (on this node: the only one here)."""
        out = docker("ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={self.service(service)}").stdout
        return out.split()

    def running_tasks(self, service: str) -> int:
        """Tasks that run and passed their health check (Swarm says `Running` only then)."""
        states = docker(
            "service", "ps", self.service(service), "--filter", "desired-state=running", "--format", "{{.CurrentState}}"
        ).stdout.splitlines()
        return sum(state.startswith("Running") for state in states)

    def wait_tasks(self, service: str, count: int, timeout: float = 180) -> None:
        def settled() -> bool:
            return self.running_tasks(service) == count and len(self.containers(service)) == count

        wait_until(settled, timeout, f"{count} healthy task(s) of {service}", interval=0.5)

    def inner_get(self, container: str, port: int, path: str) -> str:
        """The body of GET path on a task's own port, whatever its status, from inside its container (the Python
        services have no curl)."""
        code = (
            "import sys, urllib.error, urllib.request\n"
            "try: r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
            "except urllib.error.HTTPError as e: r = e\n"
            "print(r.read().decode())"
        )
        url = f"http://127.0.0.1:{port}{path}"
        return docker("exec", container, "python", "-c", code, url, timeout=30).stdout

    def metric(self, container: str, service: str, name: str, **labels: str) -> float:
        return metric_sum(self.inner_get(container, INNER_PORTS[service], "/metrics"), name, **labels)

    def readyz(self, container: str, service: str) -> dict:
        return json.loads(self.inner_get(container, INNER_PORTS[service], "/readyz"))

    def save_logs(self, artifacts: Path) -> None:
        """Every service's log into the artifacts, for people to read after the run."""
        (artifacts / f"swarm-{self.name}.log").write_text(self.logs(tail=300))

    def log(self) -> str:
        """The end of every service's log (tests/support/logs.py attaches it to a failure)."""
        return self.logs(tail=30)

    def logs(self, tail: int = 80) -> str:
        parts = []
        for service in SERVICES:
            try:
                result = docker(
                    "service",
                    "logs",
                    "--no-task-ids",
                    "--tail",
                    str(tail),
                    self.service(service),
                    check=False,
                    timeout=30,
                )
            except subprocess.TimeoutExpired:  # `service logs` can hang on a task being replaced
                parts.append(f"--- {service}: no log within 30 s")
                continue
            if result.returncode == 0:
                parts.append(f"--- {service}\n{result.stdout[-6000:]}{result.stderr[-3000:]}")
        return "\n".join(parts)


def swarm_state() -> str:
    """This engine's swarm membership: `inactive` or `active`."""
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


def log_in(page: Page, swarm: SwarmStack) -> None:
    """The chat's login page in Chromium, through the edge, as the admin."""
    page.goto(swarm.url("chat-app"))
    expect(page.get_by_text("Username")).to_be_visible(timeout=30_000)
    page.locator("#email").fill("admin")
    page.locator("#password").fill(swarm.secret("admin_password"))
    page.keyboard.press("Enter")
    expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)


# --- what the routers do with the model tasks ----------------------------------------------------------------


def upstreams_serving(swarm: SwarmStack, router: str) -> set[str]:
    """The upstreams this router replica would send the model to now (from its /readyz)."""
    upstreams = swarm.readyz(router, "router")["upstreams"]
    return {u["name"] for u in upstreams if u["state"] == "up" and SWARM_MODEL in u.get("models", [])}


def every_router_serves_from(swarm: SwarmStack, expected: set[str]) -> bool:
    return all(upstreams_serving(swarm, router) == expected for router in swarm.containers("router"))


def where_answered(swarm: SwarmStack, requests: int) -> list[str]:
    """Send `requests` completions at once through the edge; the upstream of each (all must succeed)."""

    async def one(http: httpx.AsyncClient) -> str:
        body = {"model": SWARM_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}
        response = await http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.headers["x-foundry-upstream"]

    async def all_at_once() -> list[str]:
        headers = {"Authorization": f"Bearer {swarm.secret('router_api_key')}"}
        async with httpx.AsyncClient(base_url=swarm.url("router"), headers=headers, timeout=60) as http:
            return list(await asyncio.gather(*(one(http) for _ in range(requests))))

    return asyncio.run(all_at_once())
