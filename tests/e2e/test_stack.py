"""The offline stack end to end, through its published ports: health, the router, both chat front ends,
monitoring, the static site, the host's Foundry Local reached through host.docker.internal, both UIs answering
while the embedded service is stopped, and Open WebUI's data across `down`/`up`.

One stack per module (Open WebUI alone takes ~30-60 s to start). The host's Foundry Local is the real runtime
started on this machine on 0.0.0.0 with its own model id (the tiny model), so each answer shows which backend
served it; the embedded service serves the real model (SmolLM2-135M-Instruct) in its container. Both at once is the
committed default. Questions are asked greedily (temperature 0) where the answer's meaning is checked.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from chat_support import ask_once
from playwright.sync_api import expect, sync_playwright

from tests.browser.webgpu_site import launch_chromium
from tests.e2e.stack import ADMIN, EMBEDDED_MODEL, HOST_MODEL, OFFLINE_SERVICES, ONE_SHOT_SERVICES, Stack, webui
from tests.support.docker import inspect
from tests.support.process import CHAT_MODEL_NAME, GatewayProcess, metric_sum, start_gateway, wait_until

pytestmark = pytest.mark.e2e


def gateway_chat_requests(gateway_url: str) -> float:
    text = httpx.get(f"{gateway_url}/metrics", timeout=5).text
    return metric_sum(text, "foundry_local_gateway_requests_total", route="/v1/chat/completions")


# --- the stack --------------------------------------------------------------------------------------------------


def test_every_service_is_up_and_healthy(stack: Stack) -> None:
    containers = [c for c in stack.ps() if c["Service"] not in ONE_SHOT_SERVICES]
    assert {c["Service"] for c in containers} == OFFLINE_SERVICES
    for one_shot in ONE_SHOT_SERVICES:
        assert inspect(stack.container(one_shot))["State"]["ExitCode"] == 0, stack.logs()
    for container in containers:
        assert container["State"] == "running", container
        assert container["Health"] == "healthy", container
    # Open WebUI started without errors: nothing it wanted to download, no connection it could not use.
    log = stack.compose("logs", "--no-color", "open-webui").stdout
    assert "| ERROR" not in log, log[-5000:]


# --- chat service ----------------------------------------------------------------------------------------------


def test_chat_streams_tokens_from_the_embedded_runtime(stack: Stack) -> None:
    stack.wait_chat_ready()
    reply = ask_once(stack.url("chat-app"), "Hello there")
    assert reply.streamed_ids, reply.events
    # stream_start carries the first token, stream_token the rest (coalesced every STREAM_INTERVAL_MS).
    assert len(reply.token_times()) >= 2, "the answer arrives as a stream of tokens"
    assert reply.streamed_text.strip()
    assert EMBEDDED_MODEL in reply.final_text()


# --- Open WebUI --------------------------------------------------------------------------------------------------


def test_open_webui_lists_only_the_loaded_foundry_models(stack: Stack, webui_token: str) -> None:
    with webui(stack, webui_token) as http:
        ids: set[str] = set()

        def listed() -> bool:
            nonlocal ids
            response = http.get("/api/models")
            ids = [m["id"] for m in response.json()["data"]] if response.status_code == 200 else []
            return set(ids) == {EMBEDDED_MODEL, HOST_MODEL}

        wait_until(listed, 60, "Open WebUI's model list", interval=1)
        assert sorted(ids) == sorted({EMBEDDED_MODEL, HOST_MODEL}), "each model once; no arena, Ollama or catalog"


def test_open_webui_chat_completion(stack: Stack, webui_token: str) -> None:
    with webui(stack, webui_token) as http:
        response = http.post(
            "/api/chat/completions",
            json={
                "model": EMBEDDED_MODEL,
                "messages": [{"role": "user", "content": "What is the largest planet in our solar system?"}],
                "stream": False,
                "max_tokens": 32,
                "temperature": 0,
            },
        )
    assert response.status_code == 200, response.text
    assert "Jupiter" in response.json()["choices"][0]["message"]["content"]


def test_open_webui_passes_the_conversation_to_the_model(stack: Stack, webui_token: str) -> None:
    """Two turns through Open WebUI: the second answer names what only the first turn said."""

    def ask(messages: list[dict]) -> str:
        body = {"model": EMBEDDED_MODEL, "messages": messages, "stream": False, "max_tokens": 32, "temperature": 0}
        with webui(stack, webui_token) as http:
            response = http.post("/api/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    told = [
        {"role": "system", "content": "You are a helpful assistant. Answer concisely."},  # the chat's default
        {"role": "user", "content": "My name is Ada. Please remember it."},
    ]
    answer = ask([*told, {"role": "assistant", "content": ask(told)}, {"role": "user", "content": "What is my name?"}])
    assert "Ada" in answer, answer


def test_open_webui_chat_completion_streams(stack: Stack, webui_token: str) -> None:
    chunks = []
    with (
        webui(stack, webui_token) as http,
        http.stream(
            "POST",
            "/api/chat/completions",
            json={
                "model": EMBEDDED_MODEL,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "stream": True,
                "max_tokens": 32,
                "temperature": 0,
            },
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                chunks.append(line.removeprefix("data: "))
    assert chunks[-1] == "[DONE]"
    deltas = [json.loads(c)["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if '"choices"' in c]
    assert sum(1 for d in deltas if d) >= 2
    assert "Paris" in "".join(deltas)


# --- the router: one endpoint for every client --------------------------------------------------------------------


def test_the_router_lists_each_model_once_with_where_it_runs(stack: Stack) -> None:
    models = {m["id"]: m for m in httpx.get(f"{stack.url('router')}/v1/models", timeout=5).json()["data"]}
    assert set(models) == {EMBEDDED_MODEL, HOST_MODEL}
    assert models[EMBEDDED_MODEL]["upstreams"] == ["foundry-local:5273"]
    assert models[EMBEDDED_MODEL]["context_length"] == 8192
    assert models[HOST_MODEL]["upstreams"][0].startswith("host.docker.internal:")
    readyz = httpx.get(f"{stack.url('router')}/readyz", timeout=5).json()
    assert readyz["ready"] and readyz["warnings"] == [], "published on 127.0.0.1: nothing to warn about"


def test_the_openai_sdk_streams_through_the_router(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url('router')}/v1", api_key="not-needed", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model=EMBEDDED_MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-foundry-upstream"] == "foundry-local:5273"
        assert response.headers["x-foundry-upstream-kind"] == "local"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text, text
    assert 0 < chunks[-1].usage.completion_tokens <= 24


def test_without_max_tokens_the_router_fits_one_as_open_webui_needs(stack: Stack) -> None:
    # Open WebUI sends no max_tokens; the runtime would ask for 2048, which this prompt's room in the model's 4096-token
    # context does not hold: the router fits one instead. Asked of the host's tiny model, whose answers run to
    # max_tokens: filling most of the real model's 8192-token context takes over a minute on two cores.
    response = httpx.post(
        f"{stack.url('router')}/v1/chat/completions",
        json={"model": HOST_MODEL, "messages": [{"role": "user", "content": "word " * 1200}]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == int(response.headers["x-foundry-max-tokens"])


# --- monitoring and the static site ------------------------------------------------------------------------------


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    targets: list[dict] = []

    def all_up() -> bool:
        nonlocal targets
        response = httpx.get(f"{stack.url('prometheus')}/api/v1/targets", timeout=5)
        targets = response.json()["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    wait_until(all_up, 60, "every Prometheus target up", interval=1)
    assert {t["labels"]["job"] for t in targets} == {
        "prometheus",
        "router",
        "chat-app",
        "foundry-local",
        "blackbox",
        "probe-http",
    }
    # The rules of prometheus/rules/ are mounted and loaded.
    groups = httpx.get(f"{stack.url('prometheus')}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert groups and all(group["rules"] for group in groups)


def test_static_site_answers(stack: Stack) -> None:
    response = httpx.get(f"{stack.url('webgpu-static')}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{stack.url('webgpu-static')}/healthz", timeout=5).status_code == 200


def test_the_browser_chat_answers_beside_the_server(stack: Stack, artifacts: Path) -> None:
    """/chat in Chromium: the real model in the page, and the same conversation through the site's own origin to
    the router and the embedded runtime, with time to first token and tokens/s for both."""
    site = stack.url("webgpu-static")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, webgpu=False)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{site}/chat?model={CHAT_MODEL_NAME}&ep=wasm&max_tokens=16")
            page.locator("body[data-state='ready']").wait_for(state="attached", timeout=120_000)
            expect(page.locator(f"#server-model option[value='{EMBEDDED_MODEL}']")).to_be_attached()
            page.check("#compare")
            page.select_option("#server-model", EMBEDDED_MODEL)
            page.fill("#prompt", "What is the capital of France?")
            page.click("#send")
            page.locator("#chat-json[data-seq='1']").wait_for(state="attached", timeout=120_000)
            turn = json.loads(page.text_content("#chat-json") or "{}")
            figures = [
                page.inner_text(f"#{side}-{figure}") for side in ("browser", "server") for figure in ("ttft", "tps")
            ]
            page.screenshot(path=artifacts / "browser-chat.png", full_page=True)
        finally:
            browser.close()
    server = turn["server"]
    assert "error" not in server, server
    assert server["model"] == EMBEDDED_MODEL
    assert server["ttftMs"] > 0 and server["tokensPerSecond"] > 0 and server["tokens"] > 0
    # The same weights, template and greedy decoding on both sides: the same answer. Not always to the last token: the
    # runtime's int4 products round their inputs to int8 on x86 CPUs, ONNX Runtime Web's do not (docs/browser-chat.md),
    # which can tip a close choice late in an answer.
    for text in (turn["text"], server["text"]):
        assert text.startswith("The capital of France is Paris"), (turn["text"], server["text"])
    assert all(re.fullmatch(r"[\d.]+ (ms|tokens/s)", figure) for figure in figures), figures
    assert all(request.startswith(site) for request in requests), requests


def test_embedded_gateway_is_published(stack: Stack) -> None:
    models = httpx.get(f"{stack.url('foundry-local')}/v1/models", timeout=5).json()["data"]
    assert [m["id"] for m in models] == [EMBEDDED_MODEL]


# --- the host's Foundry Local through host.docker.internal ---------------------------------------------------------


def test_chat_service_reaches_the_host_foundry_local(stack: Stack, host_foundry: GatewayProcess) -> None:
    readyz = httpx.get(f"{stack.url('chat-app')}/readyz", timeout=5).json()
    assert "host.docker.internal" in json.dumps(readyz)
    assert HOST_MODEL in json.dumps(readyz)
    before = gateway_chat_requests(host_foundry.url)
    reply = ask_once(stack.url("chat-app"), "Hello host", {"model": HOST_MODEL})
    assert reply.streamed_text.strip(), reply.events
    assert HOST_MODEL in reply.final_text()
    assert gateway_chat_requests(host_foundry.url) > before, "the host's runtime served the answer"


def test_open_webui_reaches_the_host_foundry_local(
    stack: Stack, webui_token: str, host_foundry: GatewayProcess
) -> None:
    before = gateway_chat_requests(host_foundry.url)
    with webui(stack, webui_token) as http:
        response = http.post(
            "/api/chat/completions",
            json={"model": HOST_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        )
    assert response.status_code == 200, response.text
    # The host's runtime serves the tiny model here (tests/e2e/stack.py): which runtime answered is what counts.
    assert response.json()["choices"][0]["message"]["content"].strip()
    assert gateway_chat_requests(host_foundry.url) > before


def test_both_uis_keep_answering_when_the_embedded_service_stops(
    stack: Stack, webui_token: str, twin_port: int, chat_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another upstream serves the same model (a second host runtime with the embedded model's id): stopping the
    embedded service changes nothing for either UI, and the model is still listed once."""
    tmp = tmp_path_factory.mktemp("twin")
    twin = start_gateway(
        tmp / "data", tmp / "twin.log", port=twin_port, GATEWAY_HOST="0.0.0.0",
        FOUNDRY_MODEL_PATH=str(chat_model), FOUNDRY_MODEL_ID=EMBEDDED_MODEL,
    )  # fmt: skip
    twin_name = f"host.docker.internal:{twin_port}"
    try:
        twin.wait_for_state({"ready"})

        def served_twice() -> bool:
            models = httpx.get(f"{stack.url('router')}/v1/models", timeout=5).json()["data"]
            entry = next((m for m in models if m["id"] == EMBEDDED_MODEL), {})
            return sorted(entry.get("upstreams", [])) == sorted(["foundry-local:5273", twin_name])

        wait_until(served_twice, 30, "the router serving the embedded model from two upstreams", interval=0.5)
        with webui(stack, webui_token) as http:
            ids = [m["id"] for m in http.get("/api/models").json()["data"]]
        assert sorted(ids) == sorted({EMBEDDED_MODEL, HOST_MODEL}), "each model once, however many serve it"

        stack.compose("stop", "foundry-local")
        try:
            before = gateway_chat_requests(twin.url)
            reply = ask_once(stack.url("chat-app"), "Are you still there?")
            assert reply.streamed_text.strip(), reply.events
            assert f"{EMBEDDED_MODEL} on {twin_name}" in reply.final_text()
            with webui(stack, webui_token) as http:
                response = http.post(
                    "/api/chat/completions",
                    json={"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False},
                )
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"].strip()
            assert gateway_chat_requests(twin.url) >= before + 2, "the twin answered both UIs"
        finally:
            stack.up()  # the embedded service back, healthy, for the tests after this one
    finally:
        twin.stop()


# --- persistence and the backend switch (last: they restart the stack) ------------------------------------------


def test_open_webui_chat_survives_down_and_up(stack: Stack, webui_token: str) -> None:
    title = f"kept across restarts {uuid.uuid4().hex[:6]}"
    chat = {
        "title": title,
        "models": [EMBEDDED_MODEL],
        "messages": [{"id": "m1", "role": "user", "content": "remember me", "timestamp": 1}],
        "history": {"messages": {}, "currentId": None},
    }
    with webui(stack, webui_token) as http:
        created = http.post("/api/v1/chats/new", json={"chat": chat})
        assert created.status_code == 200, created.text
        chat_id = created.json()["id"]

    stack.down(volumes=False)
    # A changed setting takes effect although the connection was stored at first boot
    # (ENABLE_PERSISTENT_CONFIG=False): the router now wants a key, and Open WebUI and the chat send it.
    stack.env["ROUTER_API_KEY"] = "e2e-router-key-" + uuid.uuid4().hex
    # ...and sign-up, closed by default after the admin (test_security.py), is opened: new accounts wait.
    stack.env["OPEN_WEBUI_ENABLE_SIGNUP"] = "true"
    stack.up()

    with httpx.Client(base_url=stack.url("open-webui"), timeout=60) as http:
        signin = http.post("/api/v1/auths/signin", json={"email": ADMIN["email"], "password": ADMIN["password"]})
        assert signin.status_code == 200, "the admin account survived"
        token = signin.json()["token"]
    with webui(stack, token) as http:
        kept = http.get(f"/api/v1/chats/{chat_id}")
        assert kept.status_code == 200, kept.text
        assert kept.json()["chat"]["title"] == title
        assert {m["id"] for m in http.get("/api/models").json()["data"]} == {EMBEDDED_MODEL, HOST_MODEL}
    with stack.http("router") as http:
        assert http.get("/v1/models").status_code == 401, "no key, no models"
        key = {"authorization": f"Bearer {stack.env['ROUTER_API_KEY']}"}
        assert http.get("/v1/models", headers=key).status_code == 200
    stack.wait_chat_ready(EMBEDDED_MODEL)
    assert EMBEDDED_MODEL in ask_once(stack.url("chat-app"), "Hello with a key").final_text()
    with stack.http("open-webui") as http:
        user = {"name": "Later", "email": f"later-{uuid.uuid4().hex[:6]}@example.test", "password": "another long one"}
        signup = http.post("/api/v1/auths/signup", json=user)
        assert signup.status_code == 200, signup.text
        assert signup.json()["role"] == "pending", "a later account waits for the admin's approval"
        # The token issued before the restart still works: the generated secret key lives in the volume.
    with webui(stack, webui_token) as http:
        assert http.get("/api/v1/auths/").status_code == 200


def test_host_foundry_local_only(stack: Stack, webui_token: str, host_foundry: GatewayProcess) -> None:
    """The documented switch: `embedded` out of COMPOSE_PROFILES, and only the host's Foundry Local serves."""
    stack.down(volumes=False)
    stack.env["COMPOSE_PROFILES"] = ""
    for name in ("ROUTER_API_KEY", "OPEN_WEBUI_ENABLE_SIGNUP"):
        stack.env.pop(name, None)  # back to the defaults
    stack.up()
    assert {c["Service"] for c in stack.ps()} == (OFFLINE_SERVICES | ONE_SHOT_SERVICES) - {"foundry-local"}

    with webui(stack, webui_token) as http:
        ids = {m["id"] for m in http.get("/api/models").json()["data"]}
    assert ids == {HOST_MODEL}

    stack.wait_chat_ready()
    before = gateway_chat_requests(host_foundry.url)
    # MODEL names the embedded model, which is not loaded now: the chat falls back to the first loaded one.
    reply = ask_once(stack.url("chat-app"), "Hello host only")
    assert reply.streamed_text.strip(), reply.events
    assert HOST_MODEL in reply.final_text()
    assert gateway_chat_requests(host_foundry.url) > before
