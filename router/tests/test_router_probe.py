"""Shape detection against in-memory servers of each kind (httpx's MockTransport: no network)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from foundry_router.probe import ProbeError, probe, service_root

pytestmark = pytest.mark.unit


def server(routes: dict[str, tuple[int, object]]) -> httpx.AsyncClient:
    """A fake upstream answering only `routes` (path -> status, JSON body); anything else is a 404 page."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path in routes:
            status, body = routes[request.url.path]
            return httpx.Response(status, json=body)
        return httpx.Response(404, text="Not Found", headers={"content-type": "text/plain"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def run_probe(routes: dict[str, tuple[int, object]], base_url: str = "http://up:1/v1", known=None):
    async def go():
        async with server(routes) as client:
            return await probe(client, base_url, {}, known)

    return asyncio.run(go())


def test_service_root_drops_the_openai_suffix() -> None:
    assert service_root("http://h:5273/v1") == "http://h:5273"
    assert service_root("http://h:5273/v1/") == "http://h:5273"
    assert service_root("https://api.example.test/openai") == "https://api.example.test/openai"


def test_foundry_local_cli_lists_only_loaded_models() -> None:
    result = run_probe(
        {
            "/openai/status": (200, {"Endpoints": ["http://127.0.0.1:51211"], "ModelDirPath": "/m"}),
            "/openai/loadedmodels": (200, ["Phi-4-mini-instruct-generic-cpu:5"]),
            "/openai/models": (200, ["Phi-4-mini-instruct-generic-cpu:5", "qwen2.5-0.5b-instruct-generic-cpu:4"]),
            "/v1/models": (200, {"data": [{"id": "Phi-4-mini-instruct-generic-cpu:5"}, {"id": "other"}]}),
        }
    )
    assert result.shape == "foundry-cli"
    assert result.models == ("Phi-4-mini-instruct-generic-cpu:5",)


def test_embedded_service_ready() -> None:
    result = run_probe(
        {
            "/healthz": (200, {"state": "ready", "message": "ok", "model": "tiny:1", "models": ["tiny:1"]}),
            "/v1/models": (200, {"object": "list", "data": [{"id": "tiny:1", "object": "model"}]}),
        }
    )
    assert (result.shape, result.models, result.state) == ("foundry-embedded", ("tiny:1",), "ready")


def test_embedded_service_downloading_offers_no_model_and_reports_progress() -> None:
    result = run_probe(
        {
            "/healthz": (503, {"state": "downloading", "message": "fetching", "download": {"percent": 42.5}}),
            "/v1/models": (200, {"data": []}),
        }
    )
    assert result.shape == "foundry-embedded"
    assert result.models == ()
    assert result.state == "downloading"
    assert result.download_percent == 42.5


def test_sdk_web_service_uses_loaded_models_not_the_catalog() -> None:
    result = run_probe(
        {
            "/status": (200, {"endpoints": ["http://127.0.0.1:40000"]}),
            "/models/loaded": (200, {"data": [{"id": "qwen2.5-0.5b-instruct-generic-cpu:4"}]}),
            "/v1/models": (200, {"data": [{"id": f"catalog-model-{i}"} for i in range(50)]}),
        }
    )
    assert result.shape == "foundry-sdk"
    assert result.models == ("qwen2.5-0.5b-instruct-generic-cpu:4",)


def test_plain_openai_server() -> None:
    result = run_probe({"/v1/models": (200, {"object": "list", "data": [{"id": "gpt-x"}, {"id": "gpt-y"}]})})
    assert (result.shape, result.models) == ("openai", ("gpt-x", "gpt-y"))


def test_known_shape_is_probed_directly() -> None:
    result = run_probe({"/v1/models": (200, {"data": [{"id": "m"}]})}, known="openai")
    assert result.shape == "openai"


def test_refused_key_is_named() -> None:
    with pytest.raises(ProbeError, match="API key"):
        run_probe({"/v1/models": (401, {"error": {"message": "bad key"}})})


def test_unreachable_upstream_is_a_probe_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            return await probe(client, "http://down:1/v1", {})

    with pytest.raises(ProbeError, match="connection failed"):
        asyncio.run(go())


def test_server_with_no_model_list_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="unexpected answer"):
        run_probe({"/v1/models": (200, {"hello": "world"})})


def test_aliases_the_upstream_reports_are_kept_beside_the_ids() -> None:
    """The embedded gateway's `alias` field; an alias equal to its id, or empty, says nothing and is left out."""
    listing = {
        "data": [
            {"id": "smollm2-135m-instruct-generic-cpu:1", "alias": "smollm2-135m-instruct"},
            {"id": "same", "alias": "same"},
            {"id": "none", "alias": ""},
            {"id": "plain"},
        ]
    }
    result = run_probe(
        {"/healthz": (200, {"state": "ready", "message": "ok"}), "/v1/models": (200, listing)}, known="foundry-embedded"
    )
    assert result.models == ("smollm2-135m-instruct-generic-cpu:1", "same", "none", "plain")
    assert result.aliases == {"smollm2-135m-instruct": "smollm2-135m-instruct-generic-cpu:1"}
    assert run_probe({"/v1/models": (200, listing)}).aliases == result.aliases  # a plain OpenAI server too
