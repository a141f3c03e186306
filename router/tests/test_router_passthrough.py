"""Aliases, routes the router does not serve, and /v1/completions and /v1/embeddings passed on: the router as a
real process in front of paced upstreams (some serving those routes, some not, with aliases in their model lists)
and in front of the real Foundry Local runtime (the embedded gateway), driven with httpx and the openai SDK."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.support.paced import PACED_MODEL
from tests.support.paced_upstream import PACED_ALIAS
from tests.support.process import CHAT_MODEL_ID, GatewayProcess

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "Hi"}]
SERVES_BOTH = ("--completions", "--embeddings")


def sdk(router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0, timeout=30)


def first_chunk(router, model: str) -> tuple[httpx.Headers, dict]:
    """A streamed chat completion's headers and first chunk."""
    body = {"model": model, "messages": HI, "max_tokens": 2, "stream": True}
    with httpx.stream("POST", f"{router.base_url}/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        line = next(line for line in response.iter_lines() if line.startswith("data:"))
        return response.headers, json.loads(line[5:])


def test_routes_it_does_not_serve_answer_in_the_openai_shape_with_the_routes_it_serves(fleet) -> None:
    router = fleet.router([fleet.paced().url])
    for method, path in [("GET", "/v1/assistants"), ("POST", "/v1/audio/speech"), ("GET", "/nothing")]:
        response = httpx.request(method, f"{router.url}{path}", timeout=10)
        assert response.status_code == 404, (path, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "unknown_route" and error["type"] == "invalid_request_error"
        assert error["message"].startswith(f"There is no {method} {path} here: this router serves GET /v1/models, ")
        for served in ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "GET /readyz"):
            assert served in error["message"], error["message"]
    for method, path, allowed in [("GET", "/v1/embeddings", "POST"), ("POST", "/v1/models", "GET")]:
        response = httpx.request(method, f"{router.url}{path}", timeout=10)
        assert response.status_code == 405, (path, response.text)
        assert response.json()["error"] == {
            "message": f"{method} {path} is not supported: use {allowed} {path}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "method_not_allowed",
        }
    # The openai SDK reads it as a NotFoundError with the message.
    with pytest.raises(openai.NotFoundError, match="this router serves"):
        sdk(router).post("/assistants", body={}, cast_to=object)


def test_an_alias_goes_to_the_model_it_names_and_routing_picks_among_them(fleet) -> None:
    """Two upstreams give the alias to different models: both are candidates, the least busy answers, under its id."""
    first = fleet.paced_with("--model", "first-model", "--alias", "shared", "--token-interval-ms", "100")
    second = fleet.paced_with("--model", "second-model", "--alias", "shared")
    router = fleet.router([first.url, second.url])
    router.wait_ready(model="second-model")
    listed = httpx.get(f"{router.base_url}/models", timeout=10).json()["data"]
    assert [(m["id"], m["alias"]) for m in listed] == [("first-model", "shared"), ("second-model", "shared")]

    headers, chunk = first_chunk(router, "shared")  # both idle: the first in order
    assert (headers["x-foundry-model"], chunk["model"]) == ("first-model", "first-model")

    async def while_first_is_busy() -> tuple[httpx.Headers, dict]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"model": "first-model", "messages": HI, "max_tokens": 100, "stream": True}
            async with client.stream("POST", f"{router.base_url}/chat/completions", json=body) as busy:
                assert busy.headers["x-foundry-upstream"] == first.url.split("/")[2]
                return await asyncio.to_thread(first_chunk, router, "shared")

    headers, chunk = asyncio.run(while_first_is_busy())
    assert (headers["x-foundry-model"], chunk["model"]) == ("second-model", "second-model")
    assert headers["x-foundry-upstream"] == second.url.split("/")[2]


def test_an_exact_id_wins_over_an_alias_of_the_same_name(fleet) -> None:
    aliased = fleet.paced_with("--model", "aliased-model", "--alias", "shared")
    exact = fleet.paced_with("--model", "shared", "--alias", "other")
    router = fleet.router([aliased.url, exact.url])
    router.wait_ready(model="shared")
    for _ in range(3):
        headers, chunk = first_chunk(router, "shared")
        assert (headers["x-foundry-model"], chunk["model"]) == ("shared", "shared")
    headers, chunk = first_chunk(router, "other")  # its own alias still reaches it
    assert chunk["model"] == "shared"
    ids = [m["id"] for m in httpx.get(f"{router.base_url}/models", timeout=10).json()["data"]]
    assert sorted(ids) == ["aliased-model", "shared"]


def test_completions_and_embeddings_reach_the_upstream_that_serves_them_through_the_openai_sdk(fleet) -> None:
    chat_only = fleet.paced()  # first in order and idle: asked first, and it answers 404 for both routes
    serving = fleet.paced_with(*SERVES_BOTH)
    router = fleet.router([chat_only.url, serving.url])
    router.wait_ready()
    client = sdk(router)
    where = serving.url.split("/")[2]

    raw = client.completions.with_raw_response.create(model=PACED_MODEL, prompt="Count:", max_tokens=4)
    assert raw.headers["x-foundry-upstream"] == where
    completion = raw.parse()
    assert (completion.model, completion.choices[0].text) == (PACED_MODEL, " tok0 tok1 tok2 tok3")
    assert completion.usage.completion_tokens == 4

    streamed = client.completions.create(model=PACED_ALIAS, prompt="Count:", max_tokens=5, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == " tok0 tok1 tok2 tok3 tok4"

    # The SDK asks for base64 floats by default and decodes them: the vectors are the upstream's, per input.
    vectors = client.embeddings.create(model=PACED_MODEL, input=["hello world", "abc"])
    assert [v.embedding for v in vectors.data] == [[11.0, 2.0, 3.0], [3.0, 1.0, 1.0]]
    floats = client.embeddings.create(model=PACED_ALIAS, input="to be", encoding_format="float")
    assert floats.data[0].embedding == [5.0, 2.0, 2.0] and floats.model == PACED_MODEL

    assert router.metric("gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="embeddings") == 2
    assert router.metric("gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="text_completion") == 2
    assert router.metric("gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="chat") == 0
    assert router.metric("router_failovers_total") == 0, "a route an upstream does not serve is no failure of it"


def test_no_upstream_serving_the_route_is_a_404_naming_each_asked_and_what_it_said(fleet) -> None:
    chat_only = fleet.paced()
    router = fleet.router([chat_only.url])
    router.wait_ready()
    client = sdk(router)
    with pytest.raises(openai.NotFoundError) as first:
        client.embeddings.create(model=PACED_MODEL, input="hello")
    message = first.value.body["message"]
    assert first.value.code == "route_not_served"
    asked = f"asked {chat_only.url} (404 Not Found: Not Found)."
    assert message.startswith(f"No upstream serves /v1/embeddings for model '{PACED_MODEL}': {asked}"), message
    assert "embedding models" in message
    # Remembered until its next probe: not asked again meanwhile, and the message says so.
    with pytest.raises(openai.NotFoundError, match="remembered from an earlier request"):
        client.embeddings.create(model=PACED_MODEL, input="hello")
    with pytest.raises(openai.NotFoundError, match="send the prompt as a chat message"):
        client.completions.create(model=PACED_MODEL, prompt="hello")
    # An unknown model is the model's 404, as for chat.
    with pytest.raises(openai.NotFoundError, match="is not loaded on any upstream") as unknown:
        client.embeddings.create(model="nope", input="hello")
    assert unknown.value.code == "model_not_found"


@pytest.fixture(scope="module")
def real_router(chat_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory):
    from tests.support.router import start_router

    router = start_router(tmp_path_factory.mktemp("router"), [f"{chat_gateway.url}/v1"])
    try:
        router.wait_ready(60, model=CHAT_MODEL_ID)
        yield router
    finally:
        router.stop()


def test_the_real_models_alias_answers_a_chat_completion(real_router, chat_gateway: GatewayProcess) -> None:
    (listed,) = httpx.get(f"{real_router.base_url}/models", timeout=10).json()["data"]
    alias = listed["alias"]
    assert listed["id"] == CHAT_MODEL_ID and alias and alias != CHAT_MODEL_ID
    question = [{"role": "user", "content": "What is the capital of France?"}]
    raw = sdk(real_router).chat.completions.with_raw_response.create(
        model=alias, messages=question, max_tokens=32, temperature=0
    )
    assert raw.headers["x-foundry-model"] == CHAT_MODEL_ID
    answer = raw.parse()
    assert answer.model == CHAT_MODEL_ID
    assert "Paris" in answer.choices[0].message.content


@pytest.mark.parametrize("route", ["/v1/embeddings", "/v1/completions"])
def test_the_real_gateway_serves_no_embeddings_nor_text_completions_and_the_404_names_it(
    real_router, chat_gateway: GatewayProcess, route: str
) -> None:
    body = {"model": CHAT_MODEL_ID, "input": "hello"} if route.endswith("embeddings") else {
        "model": CHAT_MODEL_ID, "prompt": "hello", "max_tokens": 4}  # fmt: skip
    response = httpx.post(f"{real_router.url}{route}", json=body, timeout=30)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "route_not_served"
    asked = f"asked {chat_gateway.url}/v1 (404 Not Found: There is no POST {route} here"
    assert error["message"].startswith(f"No upstream serves {route} for model '{CHAT_MODEL_ID}': {asked}"), error
