"""External clients through the router: the official OpenAI SDKs (Python, and Node via tests/clients/stream.mjs)
stream and complete through the router in front of the real Foundry Local runtime serving the real model
(SmolLM2-135M-Instruct, the `chat_gateway` fixture), greedily (temperature 0), so each answer is checked for what it
says: Paris, Jupiter, a Python function in a fenced block, a name remembered from the turn before.

The Node SDK is pinned by tests/clients/package-lock.json and installed with `npm ci` into
.cache/test-clients (reused while package.json and the lock are unchanged).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.support.process import CHAT_MODEL_ID, REPO, GatewayProcess
from tests.support.router import RouterProcess, start_router

pytestmark = pytest.mark.integration

CLIENTS = REPO / "tests" / "clients"
CLIENTS_CACHE = REPO / ".cache" / "test-clients"
# Room for each answer below: the code block closes after ~30 tokens; the other answers stop before.
MAX_TOKENS = 64
# The chat's default system prompt: with it, SmolLM2 answers in one sentence and stops.
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer concisely."}
FRANCE = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
JUPITER = [{"role": "user", "content": "What is the largest planet in our solar system?"}]
SQUARE = [{"role": "user", "content": "Write a Python function that returns the square of a number."}]
REMEMBER = [SYSTEM, {"role": "user", "content": "My name is Ada. Please remember it."}]
NAME = "What is my name?"  # asked after REMEMBER and its answer; alone, the model does not know it
FENCED_PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def check_python_function(answer: str) -> None:
    """The answer holds a fenced Python block that parses and defines a function of one argument (the number)."""
    block = FENCED_PYTHON.search(answer)
    assert block, f"no ```python block in {answer!r}"
    tree = ast.parse(block.group(1))
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    assert functions, f"no function defined in {block.group(1)!r}"
    assert len(functions[0].args.args) == 1, ast.unparse(functions[0])


@pytest.fixture(scope="module")
def router(chat_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """The router with the embedded gateway (the real model) as its only upstream."""
    process = start_router(tmp_path_factory.mktemp("router"), [f"{chat_gateway.url}/v1"])
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def model_id(router: RouterProcess, chat_gateway: GatewayProcess) -> str:
    """The model the router offers: the gateway's loaded model, under the id the gateway gives it."""
    served = chat_gateway.healthz().json()["model"]
    assert served == CHAT_MODEL_ID
    ids = [m["id"] for m in httpx.get(f"{router.url}/v1/models", timeout=10).json()["data"]]
    assert ids == [served]
    return served


@pytest.fixture(scope="module")
def upstream_name(chat_gateway: GatewayProcess) -> str:
    """How the router names the gateway in X-Foundry-Upstream (docs/router.md: `host:port`)."""
    return urlsplit(chat_gateway.url).netloc


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
        messages=FRANCE,
        max_tokens=MAX_TOKENS,
        temperature=0,
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
    assert "Paris" in "".join(content), content
    # The model ended its turn itself, before max_tokens.
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1, chunks
    # A byte-level token that ends mid-character is sent with the next one: chunks <= tokens.
    assert len(content) <= usage[0].completion_tokens < MAX_TOKENS
    assert usage[0].prompt_tokens > 0
    assert {c.model for c in chunks} == {model_id}


def test_python_sdk_completes_through_the_router(client: openai.OpenAI, model_id: str, upstream_name: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model_id, messages=JUPITER, max_tokens=MAX_TOKENS, temperature=0
    )
    assert raw.status_code == 200
    check_headers(raw.headers, upstream_name, model_id)
    completion = raw.parse()
    assert completion.model == model_id
    assert completion.choices[0].message.role == "assistant"
    assert "Jupiter" in completion.choices[0].message.content, completion
    assert completion.choices[0].finish_reason == "stop"
    assert 0 < completion.usage.completion_tokens < MAX_TOKENS
    assert completion.usage.prompt_tokens > 0


def test_async_python_sdk_streams_concurrently(router: RouterProcess, model_id: str) -> None:
    """Several streams at once through one AsyncOpenAI client (the chat service's way), each answered whole and
    right: the capital of France, the largest planet, a Python function, and a conversation that remembers a name
    (its two turns one after the other, beside the others)."""

    async def run() -> tuple[str, str, str, str]:
        async with openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="unused", max_retries=0) as aclient:

            async def one(messages: list[dict[str, str]]) -> str:
                stream = await aclient.chat.completions.create(
                    model=model_id,
                    messages=messages,
                    max_tokens=MAX_TOKENS,
                    temperature=0,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text, tokens = "", 0
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text += chunk.choices[0].delta.content
                    if chunk.usage:
                        tokens = chunk.usage.completion_tokens
                assert tokens > 0, text
                return text

            async def conversation() -> str:
                first = await one(REMEMBER)
                return await one([*REMEMBER, {"role": "assistant", "content": first}, user(NAME)])

            return await asyncio.gather(one(FRANCE), one(JUPITER), one(SQUARE), conversation())

    france, jupiter, square, name = asyncio.run(run())
    assert "Paris" in france, france
    assert "Jupiter" in jupiter, jupiter
    check_python_function(square)
    assert "Ada" in name, name


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


def node_stream(script: Path, router: RouterProcess, model: str, prompt: str) -> dict:
    """What stream.mjs saw of one greedy streamed answer (`prompt`: a message, or a JSON conversation)."""
    result = subprocess.run(
        ["node", str(script), f"{router.url}/v1", model, prompt, str(MAX_TOKENS), "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"stream.mjs exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_node_sdk_streams_through_the_router(
    node_stream_script: Path, router: RouterProcess, model_id: str, upstream_name: str
) -> None:
    answer = node_stream(node_stream_script, router, model_id, SQUARE[0]["content"])
    assert answer["status"] == 200
    assert answer["chunks"] > 1, answer
    check_python_function(answer["text"])
    assert answer["model"] == model_id
    assert answer["usage"]["completion_tokens"] >= answer["chunks"], answer
    assert answer["usage"]["prompt_tokens"] > 0, answer
    check_headers(answer["headers"], upstream_name, model_id)


def test_node_sdk_holds_a_conversation(node_stream_script: Path, router: RouterProcess, model_id: str) -> None:
    """The second turn carries the first and its answer (the client keeps the history): the name is remembered."""
    first = node_stream(node_stream_script, router, model_id, json.dumps(REMEMBER))
    assert first["finishReason"] == "stop", first
    conversation = [*REMEMBER, {"role": "assistant", "content": first["text"]}, user(NAME)]
    second = node_stream(node_stream_script, router, model_id, json.dumps(conversation))
    assert "Ada" in second["text"], second
    assert second["finishReason"] == "stop", second
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"], (first, second)


def test_node_sdk_reports_an_unknown_model_as_an_error(node_stream_script: Path, router: RouterProcess) -> None:
    """The script fails loudly (non-zero, the router's OpenAI-shaped 404 in its message), never prints a result."""
    result = subprocess.run(
        ["node", str(node_stream_script), f"{router.url}/v1", "no-such-model", NAME],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "404" in result.stderr, result.stderr
