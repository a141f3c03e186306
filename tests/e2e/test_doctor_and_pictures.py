"""scripts/doctor against the running stack, and the pictures of the stack the README shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.webgpu_site import launch_chromium
from tests.e2e.stack import EMBEDDED_MODEL, HOST_MODEL, OFFLINE_SERVICES, PORT_VARIABLES, Stack, webui
from tests.support.process import REPO, GatewayProcess

pytestmark = pytest.mark.e2e


def test_doctor_finds_everything_well_on_the_running_stack(
    stack: Stack, host_foundry: GatewayProcess, twin_port: int
) -> None:
    env = {
        **os.environ,
        **stack.env,
        "COMPOSE_PROJECT_NAME": stack.project,
        **{PORT_VARIABLES[service]: str(port) for service, port in stack.ports.items()},
    }
    result = subprocess.run(
        [str(REPO / "scripts" / "doctor"), "--json"], capture_output=True, text=True, timeout=180, env=env
    )
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    # The host twin (conftest.py) is an upstream of the router that is down unless a test runs it: a warning.
    twin = f"upstream host.docker.internal:{twin_port}"
    failed = {name: c for name, c in checks.items() if c["mark"] != "ok" and name != twin}
    assert result.returncode == 0 and not failed, json.dumps(failed, indent=2)
    assert checks.get(twin, {"mark": "warn"})["mark"] in {"ok", "warn"}
    for service in OFFLINE_SERVICES:
        assert checks[f"container {service}"]["mark"] == "ok", service
    assert checks[f"port {stack.ports['router']}"]["detail"].endswith("(router)")
    # The router serves both models, from the embedded service and the host's Foundry Local.
    assert EMBEDDED_MODEL in checks["router"]["detail"] and HOST_MODEL in checks["router"]["detail"]
    embedded = [c for name, c in checks.items() if name.startswith("upstream foundry-local")]
    assert embedded and all(c["mark"] == "ok" and EMBEDDED_MODEL in c["detail"] for c in embedded), embedded
    assert HOST_MODEL in checks[f"upstream host.docker.internal:{host_foundry.url.rsplit(':', 1)[1]}"]["detail"]
    assert "router warning" not in checks, "published on 127.0.0.1: nothing to warn about"
    assert checks["router /v1/models"]["mark"] == "ok"
    # Open WebUI's one connection, the router, lists both.
    webui_models = checks["Open WebUI models"]["detail"]
    assert webui_models.startswith("http://router:4000/v1 lists ") and ";" not in webui_models
    assert EMBEDDED_MODEL in webui_models and HOST_MODEL in webui_models
    assert host_foundry.healthz().json()["model"] in checks["host Foundry Local"]["detail"]


def test_open_webui_page_answers_with_meaning(stack: Stack, webui_token: str, artifacts: Path) -> None:
    """Signed in as the admin, a question typed into Open WebUI's own page (which sends tool definitions with each
    message, unlike its API) is answered by the real model: the picture in the README."""
    url = stack.url("open-webui")
    # An admin is shown the release notes until they are dismissed once (when the page finishes loading, so
    # waiting for them races the page): dismiss them through the API the button calls, before the page loads.
    # Temperature 0 (the user's advanced parameters, as the settings panel saves them): greedy, a checkable answer.
    # The real model as the user's default model (the host's runtime serves the tiny one).
    settings = {"ui": {"showChangelog": False, "models": [EMBEDDED_MODEL], "params": {"temperature": 0}}}
    with webui(stack, webui_token) as http:
        response = http.post("/api/v1/users/user/settings/update", json=settings)
        assert response.status_code == 200, response.text
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, webgpu=False)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            # Signed in before any of the page's scripts run. (Setting it from a loaded /auth page raced that
            # page's own start-up, which could leave the browser on the sign-in form.)
            page.add_init_script(f"localStorage.setItem('token', {json.dumps(webui_token)})")
            page.goto(url)
            try:
                # The chat page opens on the user's default model.
                page.get_by_text(re.compile(rf"^{re.escape(EMBEDDED_MODEL)}$")).first.wait_for(timeout=60_000)
                page.locator("#chat-input").click()
                page.keyboard.type("What is the capital of France?")
                page.keyboard.press("Enter")
                # The answer, not the question (which does not name it), in the conversation.
                page.get_by_text(re.compile(r"\bParis\b")).first.wait_for(timeout=120_000)
            finally:
                page.screenshot(path=str(artifacts / "open-webui.png"))
        finally:
            browser.close()
