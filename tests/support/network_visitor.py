"""A visitor from the network (run in a container by tests/e2e/test_network_lock.py): what each service of the stack
answers without a login, with the passwords an intruder tries first, and with the generated login.

    python network_visitor.py '[ADDRESS, {SERVICE: PORT}, {SECRET: VALUE, "defaults": [...], "certificate_path": ...}]'

Prints one JSON object of what it saw. Only httpx (in the chat image) and the standard library.
"""

from __future__ import annotations

import base64
import json
import sys

import httpx


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def visit(address: str, ports: dict[str, int], secrets: dict) -> dict:
    def url(service: str, path: str) -> str:
        return f"http://{address}:{ports[service]}{path}"

    defaults = secrets["defaults"]
    seen: dict = {}
    with httpx.Client(timeout=20) as http:
        chat_login = url("chat-app", "/login")
        seen["chat_auth_config"] = http.get(url("chat-app", "/auth/config")).json()
        seen["chat_settings_anonymous"] = http.get(url("chat-app", "/project/settings")).status_code
        seen["chat_login_defaults"] = [
            http.post(chat_login, data={"username": "admin", "password": p}).status_code for p in defaults
        ]
        login = http.post(chat_login, data={"username": "admin", "password": secrets["CHAT_PASSWORD"]})
        seen["chat_login"] = login.status_code
        token = login.cookies.get("access_token", "")
        seen["chat_settings_logged_in"] = http.get(
            url("chat-app", "/project/settings"), cookies={"access_token": token}
        ).status_code

        models = url("router", "/v1/models")
        seen["router_anonymous"] = http.get(models).status_code
        seen["router_wrong_key"] = http.get(models, headers={"Authorization": "Bearer admin"}).status_code
        seen["router_key"] = http.get(
            models, headers={"Authorization": f"Bearer {secrets['ROUTER_API_KEY']}"}
        ).status_code

        config = url("prometheus", "/api/v1/status/config")
        seen["prometheus_anonymous"] = http.get(config).status_code
        seen["prometheus_defaults"] = [http.get(config, headers=basic("admin", p)).status_code for p in defaults]
        seen["prometheus_password"] = http.get(
            config, headers=basic("admin", secrets["PROMETHEUS_PASSWORD"])
        ).status_code

        signin = url("open-webui", "/api/v1/auths/signin")
        seen["webui_models_anonymous"] = http.get(url("open-webui", "/api/models")).status_code
        first = {"name": "First", "email": "first@example.test", "password": "first visitor"}
        seen["webui_signup"] = http.post(url("open-webui", "/api/v1/auths/signup"), json=first).status_code
        seen["webui_defaults"] = [
            http.post(signin, json={"email": "admin@localhost", "password": p}).status_code for p in defaults
        ]
        admin = http.post(signin, json={"email": "admin@localhost", "password": secrets["WEBUI_ADMIN_PASSWORD"]})
        seen["webui_signin"] = [admin.status_code, admin.json().get("role")]

    # The HTTPS edge, verified against the generated certificate only.
    with httpx.Client(timeout=20, verify=secrets["certificate_path"]) as https:
        seen["edge_chat"] = https.get(f"https://{address}:{ports['edge-chat']}/auth/config").json()
        seen["edge_router_anonymous"] = https.get(f"https://{address}:{ports['edge-router']}/v1/models").status_code
    return seen


if __name__ == "__main__":
    print(json.dumps(visit(*json.loads(sys.argv[1]))))
