"""A network deployment is locked by default: the stack published on a non-loopback address of this machine (its
address on Docker's bridge), with the HTTPS edge, reached as a colleague would (from another container) and in
Chromium. Nothing answers an anonymous visitor, no default password opens anything, and the generated logins,
printed by `scripts/secrets`, do. Grafana is absent offline (its image cannot be built here): compose.yaml's
wiring of its password is checked in test_compose_config.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from tests.browser.webgpu_site import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.stack import Stack
from tests.support.docker import bridge_gateway, docker
from tests.support.process import REPO, free_port

pytestmark = pytest.mark.e2e

SERVICES = ("router", "chat-app", "open-webui", "prometheus", "edge")
EDGE_PORTS = {"chat-app": "EDGE_CHAT_PORT", "open-webui": "EDGE_OPEN_WEBUI_PORT", "router": "EDGE_ROUTER_PORT"}
VISITOR = REPO / "tests" / "support" / "network_visitor.py"
# Passwords an intruder tries first: none of them may open anything.
DEFAULT_PASSWORDS = ("admin", "password", "changeme", "")


def host_address() -> str:
    """An address of this machine that is not loopback and that its containers reach: the Docker bridge's."""
    return bridge_gateway()


@pytest.fixture(scope="module")
def locked(offline_images: float, artifacts: Path) -> Iterator[Stack]:
    edge_ports = {variable: str(free_port()) for variable in EDGE_PORTS.values()}
    stack = Stack.create(
        f"fs-locked-{uuid.uuid4().hex[:8]}",
        COMPOSE_PROFILES="edge",
        BIND_ADDRESS=host_address(),
        **edge_ports,
    )
    stack.down(volumes=True)
    try:
        stack.compose("up", "--detach", "--wait", "--wait-timeout", "300", *SERVICES)
        yield stack
    finally:
        (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=400))
        stack.down(volumes=True)


def secrets_command(stack: Stack, *args: str) -> str:
    """scripts/secrets, as a user runs it beside their stack (the same Compose files, project and settings)."""
    env = {
        **stack.env,
        "COMPOSE_PROJECT_NAME": stack.project,
        "COMPOSE_FILE": f"{REPO / 'compose.yaml'}:{REPO / 'compose.offline.yaml'}",
    }
    result = subprocess.run(
        [str(REPO / "scripts" / "secrets"), *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed_secrets(stack: Stack) -> dict[str, str]:
    """The logins as `scripts/secrets` prints them, read back from its words."""
    text = secrets_command(stack)
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.startswith("  ")}
    assert text.startswith("The stack is locked"), text

    def after(service: str, word: str) -> str:
        words = lines[service].split()
        return words[words.index(word) + 1]

    return {
        "CHAT_PASSWORD": after("chat", "password"),
        "WEBUI_ADMIN_PASSWORD": after("Open", "password"),
        "ROUTER_API_KEY": after("router", "key"),
        "PROMETHEUS_PASSWORD": after("Prometheus", "password"),
    }


def test_every_service_refuses_a_visitor_without_the_generated_login(locked: Stack, tmp_path: Path) -> None:
    secrets = printed_secrets(locked)
    certificate = secrets_command(locked, "certificate")
    (tmp_path / "edge.crt").write_text(certificate)
    address = host_address()
    ports = {service: locked.ports[service] for service in ("router", "chat-app", "open-webui", "prometheus")}
    ports |= {"edge-chat": locked.env["EDGE_CHAT_PORT"], "edge-router": locked.env["EDGE_ROUTER_PORT"]}
    given = {**secrets, "defaults": list(DEFAULT_PASSWORDS), "certificate_path": "/visitor/edge.crt"}
    (tmp_path / "visitor.py").write_text(VISITOR.read_text())
    for path in (tmp_path, tmp_path / "visitor.py", tmp_path / "edge.crt"):  # read by the image's user
        path.chmod(0o755 if path.is_dir() else 0o644)
    # From a container on Docker's default bridge: a machine on the network, not this one's loopback.
    result = docker(
        "run", "--rm", "--network", "bridge", "--volume", f"{tmp_path}:/visitor:ro", "--entrypoint", "python",
        "foundry-stack/chat-app:dev", "/visitor/visitor.py", json.dumps([address, ports, given]),
        timeout=180,
    )  # fmt: skip
    seen = json.loads(result.stdout)

    assert seen["chat_auth_config"]["requireLogin"] is True and seen["chat_auth_config"]["passwordAuth"] is True
    assert seen["chat_settings_anonymous"] == 401
    assert set(seen["chat_login_defaults"]) <= {401, 422}, "refused (422: an empty password is not even a form)"
    assert (seen["chat_login"], seen["chat_settings_logged_in"]) == (200, 200)

    assert (seen["router_anonymous"], seen["router_wrong_key"], seen["router_key"]) == (401, 401, 200)

    assert seen["prometheus_anonymous"] == 401
    assert set(seen["prometheus_defaults"]) == {401}, seen
    assert seen["prometheus_password"] == 200

    assert seen["webui_models_anonymous"] == 401
    assert seen["webui_signup"] == 403, "the admin exists from the first start: no first visitor becomes it"
    assert set(seen["webui_defaults"]) <= {400, 401}
    assert seen["webui_signin"] == [200, "admin"]

    # HTTPS through the edge, verified against the generated certificate.
    assert seen["edge_chat"]["requireLogin"] is True
    assert seen["edge_router_anonymous"] == 401


def test_https_answers_with_the_generated_certificate_in_curl_and_chromium(locked: Stack, tmp_path: Path) -> None:
    certificate_pem = secrets_command(locked, "certificate")
    (tmp_path / "edge.crt").write_text(certificate_pem)
    url = f"https://{host_address()}:{locked.env['EDGE_CHAT_PORT']}"
    # curl with the certificate as its only trust: verified (a wrong or missing trust fails with code 60).
    trusted = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--cacert", str(tmp_path / "edge.crt"), f"{url}/auth/config"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["requireLogin"] is True
    untrusted = subprocess.run(["curl", "--silent", f"{url}/auth/config"], capture_output=True, timeout=30)
    assert untrusted.returncode == 60, "without its certificate, curl refuses the edge"

    # Chromium trusting exactly this certificate's key: the login page over HTTPS.
    public_key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"]
        )
        try:
            page = browser.new_page()
            response = page.goto(url)
            assert response is not None and response.ok
            page.get_by_label("Username").wait_for(timeout=30_000)  # the login form, not a chat
            assert page.evaluate("location.protocol") == "https:"
        finally:
            browser.close()
