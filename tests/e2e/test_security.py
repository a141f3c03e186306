"""Security of the running stack, checked on the containers themselves (test_compose_config.py checks the
rendered configuration): where ports are published, how each container runs, what the images hold, what the
model server exposes to its neighbours (the router first), what the router exposes, and who may sign up to Open
WebUI.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.stack import ADMIN, EMBEDDED_MODEL, OFFLINE_SERVICES, ONE_SHOT_SERVICES, Stack
from tests.support.docker import docker, inspect

pytestmark = pytest.mark.e2e

# Open WebUI copies files into its own package folder at every start (compose.yaml): its root stays writable.
WRITABLE_ROOT = {"open-webui"}
# The runtime's own routes: starting, stopping and swapping models is for the gateway's process alone.
ADMIN_ROUTES = [
    ("POST", "/shutdown"),
    ("GET", "/status"),
    ("GET", "/models/loaded"),
    ("GET", "/models/load/smollm2-135m-instruct"),
    ("POST", "/models/unload/smollm2-135m-instruct"),
    ("GET", "/catalogs/local/v1/models"),
]
# Variables whose value would be a secret, and values that only say there is none.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
PLACEHOLDERS = {"", "not-needed", "none", "changeme"}
# Files that hold keys or credentials when someone bakes them in by mistake, searched in the whole image but
# for the Python packages (whose test suites ship throwaway keys).
FIND_SECRET_FILES = (
    "find / -xdev \\( -path /proc -o -path '*/site-packages' -o -path '*/dist-packages' \\) -prune -o "
    "\\( -name .env -o -name .webui_secret_key -o -name 'id_rsa*' -o -name 'id_ed25519*' -o -name '*.key' "
    "-o -name .netrc -o -name .pypirc -o -name .git-credentials \\) -type f -print"
)
# The containers that reach the model server: the router (its upstream) and, on the same network, the two chat
# front ends (which have no reason to: they talk to the router).
NEIGHBOURS = ("router", "chat-app", "open-webui")
# Run inside a neighbour of the model server: the status of each admin route and of the OpenAI model list (which
# must answer: the 404s are the gateway's, not a network that is down), and whether each other port of the model
# server's container can be connected to.
PROBE = """
import json, socket, sys, urllib.error, urllib.request
routes, ports = json.loads(sys.argv[1]), json.loads(sys.argv[2])
statuses = {}
for method, path in [*routes, ("GET", "/v1/models")]:
    body = b"" if method == "POST" else None
    request = urllib.request.Request("http://foundry-local:5273" + path, method=method, data=body)
    try:
        statuses[path] = urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as error:
        statuses[path] = error.code
for port in ports:
    try:
        socket.create_connection(("foundry-local", port), timeout=3).close()
        statuses[port] = "open"
    except OSError:
        statuses[port] = "closed"
print(json.dumps(statuses))
"""
LISTENING = """
import pathlib
for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
    fields = line.split()
    if fields[3] == "0A":  # LISTEN
        print(fields[1])
"""


def listening_ports(container: str) -> dict[int, str]:
    """The container's listening TCP ports and their addresses, as /proc/net/tcp writes them (little-endian hex:
    00000000 is every interface, 127.x.y.z ends in 7F; Docker's DNS is 127.0.0.11)."""
    listening = in_container(container, LISTENING).split()
    return {int(address.split(":")[1], 16): address.split(":")[0] for address in listening}


def containers(stack: Stack) -> dict[str, dict]:
    return {c["Service"]: inspect(c["ID"]) for c in stack.ps()}


def in_container(container: str, code: str, *args: str) -> str:
    return docker("exec", container, "python", "-c", code, *args, timeout=60).stdout


def test_every_published_port_is_on_localhost(stack: Stack) -> None:
    published = {}
    for service, info in containers(stack).items():
        for port, bindings in (info["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published[f"{service} {port}"] = binding["HostIp"]
    assert published, "the stack publishes its front ends"
    assert published["router 4000/tcp"] == "127.0.0.1", "the one model endpoint stays on this machine"
    assert set(published.values()) == {"127.0.0.1"}, published


def test_every_container_runs_unprivileged(stack: Stack) -> None:
    found = containers(stack)
    assert set(found) == OFFLINE_SERVICES | ONE_SHOT_SERVICES and "router" in found
    for service, info in found.items():
        config, host = info["Config"], info["HostConfig"]
        assert config["User"] and config["User"].split(":")[0] not in {"0", "root"}, service
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert not host["Privileged"], service
        assert host["ReadonlyRootfs"] == (service not in WRITABLE_ROOT), service
        if service in ONE_SHOT_SERVICES:
            assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0, service
            continue
        # What actually runs: every process of the container, as the kernel sees it.
        processes = docker("top", info["Id"], "-eo", "pid,uid,comm").stdout.splitlines()[1:]
        assert processes and all(line.split()[1] != "0" for line in processes), f"{service}: {processes}"


def test_no_secret_in_any_image_or_its_history(stack: Stack) -> None:
    found = containers(stack)
    images = {info["Config"]["Image"] for info in found.values()}
    assert found["router"]["Config"]["Image"] in images
    for image in sorted(images):
        details = json.loads(docker("image", "inspect", image).stdout)[0]
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
        assignments = [*details["Config"]["Env"], *re.findall(r"\b(\w+=\S*)", history)]
        for name, _, value in (a.partition("=") for a in assignments):
            if SECRET_NAME.search(name):
                assert value.strip("'\"").lower() in PLACEHOLDERS, f"{image}: {name} is set in the image"
        # As root in a throwaway container without network: to read every folder, nothing else.
        found = docker("run", "--rm", "--user", "0", "--network", "none", "--entrypoint", "sh", image, "-c",
                       FIND_SECRET_FILES).stdout.split()  # fmt: skip
        assert not found, f"{image} holds files that look like secrets: {found}"


def test_model_server_admin_routes_are_closed_to_the_other_containers(stack: Stack) -> None:
    found = containers(stack)
    # The runtime's own web service listens on loopback inside its container, on a port it picks.
    ports = listening_ports(found["foundry-local"]["Id"])
    assert ports.pop(5273) == "00000000", "the gateway listens on every interface of its container"
    assert ports and all(address.endswith("7F") for address in ports.values()), f"all else is on loopback: {ports}"
    for neighbour in NEIGHBOURS:
        probe = in_container(found[neighbour]["Id"], PROBE, json.dumps(ADMIN_ROUTES), json.dumps(sorted(ports)))
        statuses = json.loads(probe)
        assert statuses["/v1/models"] == 200, f"{neighbour} reaches the gateway's OpenAI routes: {statuses}"
        assert {path: statuses[path] for _, path in ADMIN_ROUTES} == {path: 404 for _, path in ADMIN_ROUTES}, neighbour
        assert {statuses[str(port)] for port in ports} == {"closed"}, f"{neighbour} reaches the runtime: {statuses}"


def test_the_router_serves_only_its_routes_open_on_loopback(stack: Stack) -> None:
    """ROUTER_API_KEYS is unset (the committed default): the router's /v1 routes answer without a key, which is
    safe because it is published on 127.0.0.1 only (test_every_published_port_is_on_localhost), and it says
    nothing is exposed. It forwards no other route: the runtime's admin routes are not found there either."""
    router = containers(stack)["router"]
    env = dict(variable.partition("=")[::2] for variable in router["Config"]["Env"])
    assert env.get("ROUTER_API_KEYS", "") == "" and env["ROUTER_PUBLISHED_ADDRESS"] == "127.0.0.1"
    with stack.http("router") as http:
        models = http.get("/v1/models")
        assert models.status_code == 200, models.text
        assert EMBEDDED_MODEL in [m["id"] for m in models.json()["data"]]
        chat = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        answer = http.post("/v1/chat/completions", json=chat)
        assert answer.status_code == 200, answer.text
        assert http.get("/readyz").json()["warnings"] == [], "published on loopback: nothing to warn about"
        for method, path in ADMIN_ROUTES:
            response = http.request(method, path)
            assert response.status_code == 404, f"{method} {path} at the router: {response.status_code}"
            error = response.json()["error"]
            assert error["code"] == "unknown_route" and "this router serves GET /v1/models, " in error["message"], error
    # It listens on its one port; anything else in its container is on loopback (Docker's DNS).
    ports = listening_ports(router["Id"])
    assert ports.pop(4000) == "00000000"
    assert all(address.endswith("7F") for address in ports.values()), f"the router listens on {ports}"


def test_open_webui_sign_up_is_closed_after_the_admin(stack: Stack, webui_token: str) -> None:
    with stack.http("open-webui") as http:
        config = http.get("/api/config").json()
        assert config["features"]["enable_signup"] is False
        later = {"name": "Intruder", "email": "intruder@example.test", "password": ADMIN["password"]}
        response = http.post("/api/v1/auths/signup", json=later)
        assert response.status_code == 403, response.text
        # Nor does the admin's account open to a wrong password.
        wrong = http.post("/api/v1/auths/signin", json={"email": ADMIN["email"], "password": "not the password"})
        assert wrong.status_code in {400, 401}, wrong.text
