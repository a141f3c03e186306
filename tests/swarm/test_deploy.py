"""The Swarm stack deployed from scratch by scripts/swarm-up: every service healthy with all its tasks, reached only
through the edge; the chat answers in Chromium, Open WebUI through the router, and Prometheus sees every replica.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from test_chat_history_browser import ask, chromium_page, finished_answers

from tests.e2e.stack import ADMIN, SWARM_MODEL, webui
from tests.support.docker import docker, health
from tests.support.process import wait_until
from tests.support.swarm import SwarmStack, log_in

pytestmark = pytest.mark.e2e

# Tasks per service on one node (swarm/stack.yaml's defaults; Grafana has none offline).
TASKS = {
    "edge": 1,
    "foundry-local": 1,
    "router": 2,
    "chat-app": 2,
    "postgres": 1,
    "open-webui": 1,
    "webgpu-static": 1,
    "prometheus": 1,
    "blackbox-exporter": 1,
    "grafana": 0,
}


def test_every_service_runs_all_its_tasks_healthy_and_only_the_edge_publishes(swarm: SwarmStack) -> None:
    for service, tasks in TASKS.items():
        assert swarm.running_tasks(service) == tasks, service
        for container in swarm.containers(service):
            assert health(container) == "healthy", service
    for service in TASKS:
        ports = json.loads(docker("service", "inspect", swarm.service(service)).stdout)[0]["Endpoint"].get("Ports")
        if service == "edge":
            assert {p["PublishMode"] for p in ports} == {"host"}
            assert {p["PublishedPort"] for p in ports} == set(swarm.ports.values())
        else:
            assert not ports, f"{service} publishes {ports}: only the edge may"


def test_secrets_stay_out_of_the_services_environment(swarm: SwarmStack) -> None:
    secrets = [swarm.secret(name) for name in ("admin_password", "router_api_key", "postgres_password")]
    for service in ("chat-app", "router", "postgres", "open-webui", "edge"):
        container = swarm.containers(service)[0]
        environment = "\n".join(json.loads(docker("inspect", container).stdout)[0]["Config"]["Env"])
        assert not [s for s in secrets if s in environment], f"a secret is in {service}'s environment"
    assert oct((swarm.secrets_dir / "admin_password").stat().st_mode & 0o777) == "0o600"


def test_the_chat_answers_in_chromium_through_the_edge(swarm: SwarmStack, artifacts: Path) -> None:
    with chromium_page() as page:
        log_in(page, swarm)
        ask(page, "Hello through the edge")
        expect(finished_answers(page).last).to_contain_text(SWARM_MODEL)
        page.screenshot(path=str(artifacts / "swarm-chat.png"))
        cookies = {c["name"] for c in page.context.cookies()}
    assert "FOUNDRY_CHAT_REPLICA" in cookies, "the edge keeps the browser on one chat replica"


def test_open_webui_answers_through_the_router(swarm: SwarmStack) -> None:
    with httpx.Client(base_url=swarm.url("open-webui"), timeout=60) as http:
        response = http.post("/api/v1/auths/signup", json=ADMIN)
        assert response.status_code == 200, response.text
        token = response.json()["token"]
    with webui(swarm, token) as http:
        wait_until(
            lambda: SWARM_MODEL in [m["id"] for m in http.get("/api/models").json()["data"]],
            60,
            "Open WebUI listing the model the routers serve",
            interval=1,
        )
        response = http.post(
            "/api/chat/completions",
            json={"model": SWARM_MODEL, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16},
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_the_router_asks_for_its_key_and_hides_its_metrics(swarm: SwarmStack) -> None:
    assert httpx.get(f"{swarm.url('router')}/v1/models", timeout=10).status_code == 401
    with swarm.router() as http:
        models = http.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == [SWARM_MODEL]
        assert http.get("/metrics").status_code == 404, "Prometheus scrapes the replicas, not the edge"
    assert httpx.get(f"{swarm.url('chat-app')}/metrics", timeout=10).status_code == 404


def test_prometheus_asks_for_the_admin_password_and_scrapes_every_replica(swarm: SwarmStack) -> None:
    assert httpx.get(f"{swarm.url('prometheus')}/api/v1/query", params={"query": "up"}, timeout=10).status_code == 401
    expected = {"router": 2, "chat-app": 2, "foundry-local": 1, "edge": 1}

    def every_replica_up() -> bool:
        found = {r["metric"]["job"]: int(r["value"][1]) for r in swarm.prometheus("sum by (job) (up == 1)")}
        return all(found.get(job) == count for job, count in expected.items())

    wait_until(every_replica_up, 90, f"Prometheus scraping {expected} replicas", interval=2)
    # The overview dashboard's panel of the chat's sessions has one series per replica.
    instances = {r["metric"]["instance"] for r in swarm.prometheus("chat_active_sessions")}
    assert len(instances) == 2, instances
