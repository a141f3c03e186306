"""Requests with `tools` on the real model (SmolLM2-135M-Instruct), greedy, through the gateway (local processes).

Foundry Local takes `tools` only for a model whose tokenizer publishes tool-call boundary tokens: ONNX Runtime GenAI
reads them from `bot_token_id` and `eot_token_id` in genai_config.json. SmolLM2's folder has none, and the runtime
refuses such a request with a 500; the gateway serves it without its tools instead and says so in a header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from foundry_common.protocol import TOOLS_IGNORED_HEADER
from tests.support.process import GatewayProcess, log_events, ready_gateway, wait_until

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of Japan?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_current_timestamp",
            "description": "The current date and time.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]


def ask(gateway: GatewayProcess, **extra: object) -> httpx.Response:
    body = {"model": gateway.healthz().json()["model"], "messages": QUESTION, "max_tokens": 24, "temperature": 0}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json={**body, **extra}, timeout=120)


def answer_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def listed_tool_calls(gateway: GatewayProcess) -> bool | None:
    (model,) = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    return model["tool_calls"]


# -- a model folder without tool markers (SmolLM2 as scripts/make-model builds it) ---------------------------------


def test_the_model_is_listed_as_unable_to_call_tools(chat_gateway: GatewayProcess) -> None:
    assert listed_tool_calls(chat_gateway) is False


def test_a_request_with_tools_is_answered_without_them_and_says_so(chat_gateway: GatewayProcess) -> None:
    plain = ask(chat_gateway)
    with_tools = ask(chat_gateway, tools=TOOLS)

    assert "Tokyo" in answer_of(with_tools)
    ignored = with_tools.headers[TOOLS_IGNORED_HEADER]
    assert "publishes no tool-call markers" in ignored and "2 tool(s)" in ignored, ignored
    # The model saw the same prompt as without tools: nothing of them reached it.
    assert with_tools.json()["usage"]["prompt_tokens"] == plain.json()["usage"]["prompt_tokens"]


def test_a_streamed_request_with_tools_is_answered_without_them(chat_gateway: GatewayProcess) -> None:
    body = {"model": chat_gateway.healthz().json()["model"], "messages": QUESTION, "max_tokens": 24,
            "temperature": 0, "stream": True, "tools": TOOLS, "tool_choice": "auto"}  # fmt: skip
    with httpx.stream("POST", f"{chat_gateway.url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert TOOLS_IGNORED_HEADER in response.headers
        events = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events
        if event != "[DONE]"
        for choice in json.loads(event).get("choices", [])
    )
    assert "Tokyo" in text, events


def test_the_ignored_tools_are_logged(chat_gateway: GatewayProcess) -> None:
    model = chat_gateway.healthz().json()["model"]
    body = {"model": model, "messages": QUESTION, "max_tokens": 4, "tools": TOOLS}
    response = httpx.post(
        f"{chat_gateway.url}/v1/chat/completions", json=body, headers={"x-request-id": "tools-7"}, timeout=120
    )
    assert response.status_code == 200

    def logged() -> bool:
        return any(e.get("event") == "tools_ignored" and e.get("request_id") == "tools-7"
                   for e in log_events(chat_gateway.log_path))  # fmt: skip

    wait_until(logged, timeout=5, what="the tools_ignored log event")
    (event,) = [e for e in log_events(chat_gateway.log_path) if e.get("request_id") == "tools-7"
                and e.get("event") == "tools_ignored"]  # fmt: skip
    assert event["model"] == model and "genai_config.json" in event["reason"]


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}], ids=["required", "named"]
)
def test_a_request_that_requires_a_tool_call_is_a_400_saying_why(
    chat_gateway: GatewayProcess, tool_choice: object
) -> None:
    response = ask(chat_gateway, tools=TOOLS, tool_choice=tool_choice)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "tool_calls_unsupported" and error["param"] == "tool_choice"
    assert "cannot call tools" in error["message"] and "bot_token_id" in error["message"]
    assert 'Send tool_choice "auto"' in error["message"]


def test_tool_choice_none_and_no_tools_pass_unchanged(chat_gateway: GatewayProcess) -> None:
    for response in (ask(chat_gateway), ask(chat_gateway, tools=TOOLS, tool_choice="none")):
        assert "Tokyo" in answer_of(response)
        assert TOOLS_IGNORED_HEADER not in response.headers


# -- the same model folder publishing tool markers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def marked_gateway(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """SmolLM2 with `bot_token_id`/`eot_token_id` in its genai_config.json (its other files linked, not copied).

    SmolLM2 has no tool-call tokens: two of its unused special tokens (<issue_start>, <issue_closed>) stand in. That
    is enough for the runtime to take tools; this test checks that the gateway then passes them through untouched.
    """
    tokens = {t["content"]: t["id"] for t in json.loads((chat_model / "tokenizer.json").read_text())["added_tokens"]}
    root = tmp_path_factory.mktemp("marked")
    folder = root / "model" / chat_model.name  # same folder name: same model id
    folder.mkdir(parents=True)
    for path in chat_model.iterdir():
        if path.name == "genai_config.json":
            config = json.loads(path.read_text())
            config["model"].update(bot_token_id=tokens["<issue_start>"], eot_token_id=tokens["<issue_closed>"])
            (folder / path.name).write_text(json.dumps(config, indent=4))
        else:  # model.onnx too: ONNX Runtime refuses weights (model.onnx.data) outside the model's own folder
            (folder / path.name).symlink_to(path)
    (root / "service").mkdir()
    with ready_gateway(root / "service", FOUNDRY_MODEL_PATH=str(folder)) as service:
        yield service


def test_a_model_with_tool_markers_gets_the_tools(marked_gateway: GatewayProcess) -> None:
    assert listed_tool_calls(marked_gateway) is True
    plain = ask(marked_gateway)
    with_tools = ask(marked_gateway, tools=TOOLS)

    assert "Tokyo" in answer_of(with_tools)
    assert TOOLS_IGNORED_HEADER not in with_tools.headers
    # The runtime wrote the tool definitions into the prompt: the tools reached the model.
    assert with_tools.json()["usage"]["prompt_tokens"] > plain.json()["usage"]["prompt_tokens"] + 50
