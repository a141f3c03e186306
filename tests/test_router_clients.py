"""External clients through the router: the official OpenAI SDKs (Python, and Node via tests/clients/stream.mjs)
stream and complete through the router in front of the real Foundry Local runtime serving the tiny model.

The Node SDK is pinned by tests/clients/package-lock.json and installed with `npm ci` into
.cache/test-clients (reused while package.json and the lock are unchanged).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.support.process import REPO, GatewayProcess
from tests.support.router import RouterProcess, start_router

pytestmark = pytest.mark.integration

CLIENTS = REPO / "tests" / "clients"
CLIENTS_CACHE = REPO / ".cache" / "test-clients"
PROMPT = "Hello there, how are you?"
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def router(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """The router with the embedded gateway (tiny model) as its only upstream."""
    process = start_router(tmp_path_factory.mktemp("router"), [f"{gateway.url}/v1"])
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def model_id(router: RouterProcess, gateway: GatewayProcess) -> str:
    """The model the router offers: the gateway's loaded model, under the id the gateway gives it."""
    served = gateway.healthz().json()["model"]
    ids = [m["id"] for m in httpx.get(f"{router.url}/v1/models", timeout=10).json()["data"]]
    assert ids == [served]
    return served


@pytest.fixture(scope="module")
def upstream_name(gateway: GatewayProcess) -> str:
    """How the router names the gateway in X-Foundry-Upstream (docs/router.md: `host:port`)."""
    return urlsplit(gateway.url).netloc


@pytest.fixture
def client(router: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{router.url}/v1", api_key="unused", max_retries=0, timeout=60)


def check_headers(headers: httpx.Headers | dict[str, str], upstream_name: str, model_id: str) -> None:
    assert headers.get("x-foundry-upstream") == upstream_name, dict(headers)
    assert headers.get("x-foundry-upstream-kind") == "local", dict(headers)
    assert headers.get("x-foundry-model") == model_id, dict(headers)
    assert headers.get("x-request-id"), dict(headers)


# -- the openai Python SDK --------------------------------------------------------------------------------


def test_python_sdk_streams_through_the_router(client: openai.OpenAI, model_id: str, upstream_name: str) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=model_id,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=MAX_TOKENS,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": "router-clients-python-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        check_headers(response.headers, upstream_name, model_id)
        assert response.headers["x-request-id"] == "router-clients-python-stream"
        chunks = list(response.parse())

    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1, chunks
    assert "".join(content).strip()
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1, chunks
    # A byte-level token that ends mid-character is sent with the next one: chunks <= tokens.
    assert usage[0].completion_tokens >= len(content)
    assert usage[0].prompt_tokens > 0
    assert {c.model for c in chunks} == {model_id}


def test_python_sdk_completes_through_the_router(client: openai.OpenAI, model_id: str, upstream_name: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model_id, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS, seed=1
    )
    assert raw.status_code == 200
    check_headers(raw.headers, upstream_name, model_id)
    completion = raw.parse()
    assert completion.model == model_id
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.strip()
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0


def test_async_python_sdk_streams_concurrently(router: RouterProcess, model_id: str) -> None:
    """Several streams at once through one AsyncOpenAI client (the chat service's way) all finish whole."""

    async def run() -> list[tuple[str, int]]:
        async with openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="unused", max_retries=0) as aclient:

            async def one(seed: int) -> tuple[str, int]:
                stream = await aclient.chat.completions.create(
                    model=model_id,
                    messages=[{"role": "user", "content": PROMPT}],
                    max_tokens=MAX_TOKENS,
                    seed=seed,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text, tokens = "", 0
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text += chunk.choices[0].delta.content
                    if chunk.usage:
                        tokens = chunk.usage.completion_tokens
                return text, tokens

            return await asyncio.gather(*(one(seed) for seed in range(4)))

    for text, tokens in asyncio.run(run()):
        assert text.strip()
        assert tokens > 0


# -- the openai Node SDK ----------------------------------------------------------------------------------


def npm_ci(folder: Path) -> None:
    """`npm ci` tests/clients' lock into `folder`, reused while package.json and the lock are unchanged."""
    inputs = [CLIENTS / "package.json", CLIENTS / "package-lock.json"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs)).hexdigest()
    if (folder / ".build-hash").is_file() and (folder / ".build-hash").read_text().strip() == digest:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is missing: the Node SDK test installs tests/clients/package-lock.json with `npm ci` "
            "(Debian: apt-get install npm; scripts/install-prerequisites installs it)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    work.chmod(0o755)
    try:
        for path in inputs:
            shutil.copy2(path, work / path.name)
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci of tests/clients failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        (work / ".build-hash").write_text(digest + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def node_stream_script() -> Path:
    """stream.mjs beside the node_modules that `npm ci` installed (Node resolves ES modules from the script)."""
    if shutil.which("node") is None:
        pytest.fail("node is missing: Debian's nodejs package provides it (scripts/install-prerequisites)")
    npm_ci(CLIENTS_CACHE)
    script = CLIENTS_CACHE / "stream.mjs"
    staged = CLIENTS_CACHE / f".stream.mjs.{os.getpid()}"
    shutil.copy2(CLIENTS / "stream.mjs", staged)
    staged.replace(script)
    return script


def test_node_sdk_streams_through_the_router(
    node_stream_script: Path, router: RouterProcess, model_id: str, upstream_name: str
) -> None:
    result = subprocess.run(
        ["node", str(node_stream_script), f"{router.url}/v1", model_id, PROMPT, str(MAX_TOKENS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"stream.mjs exited {result.returncode}:\n{result.stderr}"
    answer = json.loads(result.stdout)
    assert answer["status"] == 200
    assert answer["chunks"] > 1, answer
    assert answer["text"].strip(), answer
    assert answer["model"] == model_id
    assert answer["usage"]["completion_tokens"] >= answer["chunks"], answer
    assert answer["usage"]["prompt_tokens"] > 0, answer
    check_headers(answer["headers"], upstream_name, model_id)


def test_node_sdk_reports_an_unknown_model_as_an_error(node_stream_script: Path, router: RouterProcess) -> None:
    """The script fails loudly (non-zero, the router's OpenAI-shaped 404 in its message), never prints a result."""
    result = subprocess.run(
        ["node", str(node_stream_script), f"{router.url}/v1", "no-such-model", PROMPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "404" in result.stderr, result.stderr
