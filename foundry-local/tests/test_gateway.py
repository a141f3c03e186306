"""The gateway in front of the real Foundry Local runtime serving the tiny model (local processes)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.support.process import GatewayProcess, metric_sum, wait_until

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def model_id(gateway: GatewayProcess) -> str:
    return gateway.healthz().json()["model"]


def metric_value(gateway: GatewayProcess, name: str, **labels: str) -> float:
    return metric_sum(httpx.get(f"{gateway.url}/metrics").text, name, **labels)


def test_models_lists_exactly_the_loaded_model(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [gateway.healthz().json()["model"]]
    assert ids[0].endswith(":1"), "clients get the full id the runtime needs, not the alias"


def test_models_state_each_models_context_length(gateway: GatewayProcess) -> None:
    # The router fits max_tokens to it; the tiny model's genai_config.json says 4096.
    (model,) = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    assert model["context_length"] == 4096


def test_healthz_and_readyz_report_the_ready_model(gateway: GatewayProcess, model_id: str) -> None:
    for response in (gateway.healthz(), gateway.readyz()):
        assert response.status_code == 200
        assert response.json()["state"] == "ready"
        assert response.json()["models"] == [model_id]


def test_non_streaming_chat(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=16, seed=1)
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0


def test_streaming_chat_has_several_chunks_and_usage(client: openai.OpenAI, model_id: str) -> None:
    stream = client.chat.completions.create(
        model=model_id,
        messages=HELLO,
        max_tokens=24,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1
    usage = next(c.usage for c in chunks if c.usage)
    # A byte-level token that ends mid-character is sent with the next one: chunks <= tokens.
    assert usage.completion_tokens >= len(content)


def test_request_without_max_tokens_answers(gateway: GatewayProcess, model_id: str) -> None:
    # Open WebUI sends no max_tokens; the runtime alone would ask for 2048 and refuse.
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": model_id, "messages": HELLO}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] > 0


def test_same_seed_gives_the_same_text(client: openai.OpenAI, model_id: str) -> None:
    def ask() -> str:
        params = {"model": model_id, "messages": HELLO, "max_tokens": 24, "seed": 7, "temperature": 1.0}
        return client.chat.completions.create(**params).choices[0].message.content

    first = ask()
    assert first
    assert ask() == first


def test_model_alias_is_accepted(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    alias = client.models.list().data[0].model_extra["alias"]
    completion = client.chat.completions.create(model=alias, messages=HELLO, max_tokens=4)
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/shutdown"),
        ("GET", "/status"),
        ("GET", "/models/loaded"),
        ("GET", "/models/load/tiny-chat"),
        ("GET", "/models/unload/tiny-chat"),
        ("POST", "/models/unload/tiny-chat"),
        ("GET", "/catalogs/local/v1/models"),
        ("POST", "/v1/responses"),
    ],
)
def test_runtime_admin_routes_are_not_reachable(
    gateway: GatewayProcess, client: openai.OpenAI, model_id: str, method: str, path: str
) -> None:
    assert httpx.request(method, f"{gateway.url}{path}").status_code == 404
    assert client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=4).usage.completion_tokens


def test_malformed_json_is_a_400_with_a_message(gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_unknown_model_is_a_404_naming_the_loaded_models(gateway: GatewayProcess, model_id: str) -> None:
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-9", "messages": HELLO})
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "gpt-9" in message
    assert model_id in message


def test_missing_model_is_a_400(gateway: GatewayProcess, model_id: str) -> None:
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": HELLO})
    assert response.status_code == 400
    assert model_id in response.json()["error"]["message"]


def test_body_over_one_megabyte_is_a_413(gateway: GatewayProcess, model_id: str) -> None:
    huge = {"model": model_id, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=huge)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]


def test_body_over_the_limit_without_content_length_is_a_413(gateway: GatewayProcess, model_id: str) -> None:
    def chunks():  # a chunked upload: the size is only known while reading
        yield b'{"model": "' + model_id.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(120):
            yield b"x" * 10_000
        yield b'"}]}'

    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=chunks())
    assert response.status_code == 413


def test_runtime_errors_keep_their_status_and_message(gateway: GatewayProcess, model_id: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={"model": model_id, "messages": "not a list", "max_tokens": 4}
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["message"]


def test_client_disconnect_mid_stream_cancels_and_service_keeps_serving(
    gateway: GatewayProcess, client: openai.OpenAI, model_id: str
) -> None:
    cancelled_before = metric_value(gateway, "foundry_local_gateway_requests_total", status="cancelled")
    # The tiny model never stops before max_tokens (min_length in its genai_config): a long stream.
    body = {"model": model_id, "messages": HELLO, "max_tokens": 4000, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [line for _, line in zip(range(3), lines, strict=False)]
        assert received
    # The gateway notices the disconnect, closes the runtime's stream and counts it.
    wait_until(
        lambda: metric_value(gateway, "foundry_local_gateway_requests_total", status="cancelled") > cancelled_before,
        timeout=10,
        what="the gateway to record the cancelled stream",
    )
    assert client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=4).usage.completion_tokens


def test_sixteen_parallel_streams_all_complete(gateway: GatewayProcess, model_id: str) -> None:
    async def one(async_client: openai.AsyncOpenAI, index: int) -> int:
        stream = await async_client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Request number {index}"}],
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
        return usage.completion_tokens

    async def all_of_them() -> list[int]:
        async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as c:
            return await asyncio.gather(*(one(c, i) for i in range(16)))

    tokens = asyncio.run(all_of_them())
    assert len(tokens) == 16
    assert all(t > 0 for t in tokens)


def test_metrics_record_time_to_first_token_and_tokens(
    gateway: GatewayProcess, client: openai.OpenAI, model_id: str
) -> None:
    before = metric_value(gateway, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model=model_id)
    list(client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=8, stream=True))
    after = metric_value(gateway, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model=model_id)
    assert after == before + 1
    assert metric_value(gateway, "foundry_local_tokens_total", gen_ai_token_type="output") > 0
    assert metric_value(gateway, "foundry_local_model_loaded", model=model_id) == 1
    assert metric_value(gateway, "foundry_local_gateway_requests_total", status="200") > 0


def test_every_request_is_logged_as_json_with_its_id(gateway: GatewayProcess, model_id: str) -> None:
    httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model_id, "messages": HELLO, "max_tokens": 2},
        headers={"x-request-id": "test-request-42"},
    )

    def logged() -> bool:
        return any(
            '"test-request-42"' in line and json.loads(line)["event"] == "chat_completion"
            for line in gateway.log().splitlines()
            if line.startswith("{")
        )

    wait_until(logged, timeout=5, what="the request's log line")
