"""The chat page (/chat) in Debian's Chromium, served by the real nginx with the tiny model: the language model runs
in the page on WASM and on WebGPU (SwiftShader) and must give exactly what ONNX Runtime GenAI gives (issue 15).

The tiny model answers in milliseconds where the real one takes about a second a token on WASM (25 s on SwiftShader):
these tests keep it where the meaning of an answer does not matter, each saying why. The real model's answers, ids,
download and cache are in test_chat_real_model.py."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Playwright, expect

from tests.browser.chat_page import SETTLED, ChatPage
from tests.browser.webgpu_site import Nginx, launch_chromium_profile, serve

pytestmark = pytest.mark.browser

# Non-ASCII, an emoji, tabs and runs of spaces: what a byte-level BPE and its pre-tokenizer must get right.
PROMPT = "Hello, wörld! 123 ça va? 😀\n  tabs\tand  spaces"
TOKENS = 24


@pytest.fixture
def chat(webgpu_server: Nginx):
    pages: list[ChatPage] = []

    def make(browser: Browser) -> ChatPage:
        pages.append(ChatPage(browser, webgpu_server))
        return pages[-1]

    yield make
    for page in pages:
        page.close()


# Tiny model: 24 tokens on SwiftShader in seconds, and a prompt the real model also gets (test_chat_real_model).
@pytest.mark.parametrize("ep", ["wasm", "webgpu"])
def test_greedy_decoding_gives_exactly_what_onnxruntime_genai_gives(
    chat, chromium_webgpu: Browser, genai_reference, ep: str
) -> None:
    page = chat(chromium_webgpu)
    page.open(ep=ep)
    page.ready()
    turn = page.send(PROMPT)
    expected = genai_reference([{"role": "user", "content": PROMPT}], TOKENS)
    assert turn["promptText"] == expected["prompt"]
    assert turn["promptIds"] == expected["prompt_ids"]
    assert turn["ids"] == expected["answer_ids"]
    assert turn["text"] == expected["answer"]
    assert (turn["ep"], turn["reason"], len(turn["ids"])) == (ep, "max_tokens", TOKENS)
    assert turn["ttftMs"] > 0 and turn["tokensPerSecond"] > 0
    assert page.foreign_requests() == []
    assert page.errors() == []


# Tiny model: only the backend choice matters here, and it loads in a second.
def test_without_webgpu_auto_runs_on_wasm_and_says_why(chat, chromium_plain: Browser) -> None:
    page = chat(chromium_plain)
    page.open(ep="auto")
    page.ready()
    assert page.page.get_attribute("body", "data-ep") == "wasm"
    assert "WebGPU is unavailable" in page.page.inner_text("#backend-note")


# Tiny model: only the router's absence matters here; its answer always runs to max_tokens, quickly.
def test_without_a_router_the_side_by_side_says_so_and_the_page_answers(chat, chromium_plain: Browser) -> None:
    page = chat(chromium_plain)
    page.open(ep="wasm")
    page.ready()
    page.page.check("#compare")
    turn = page.send("Hi")
    assert turn["reason"] == "max_tokens" and turn["ids"]
    reason = "the router cannot be reached from this site (HTTP 502): is the stack's router running?"
    assert reason in turn["server"]["error"]
    assert reason in page.page.inner_text("#server-answer")


# Tiny model: 500 tokens in seconds on WASM. Characters split across tokens: test_chat_text_stream.py (the real
# tokenizer, text and random ids) and test_chat_real_model.py (an emoji from the real model).
LONG_TOKENS = 500


def test_a_long_answer_is_streamed_as_exactly_its_full_decode(chat, chromium_plain: Browser, genai_reference) -> None:
    """The page decodes each token's text from a few tokens and appends it to the message (issue 23): what it
    streamed and what it shows must be the full decode of the answer, which is ONNX Runtime GenAI's text."""
    page = chat(chromium_plain)
    page.open(ep="wasm", tokens=LONG_TOKENS)
    page.ready()
    turn = page.send(PROMPT)
    expected = genai_reference([{"role": "user", "content": PROMPT}], LONG_TOKENS)
    assert (turn["reason"], turn["ids"]) == ("max_tokens", expected["answer_ids"])
    assert turn["streamedText"] == turn["text"] == expected["answer"]
    # The message on screen is that text, appended token by token into one text node.
    answer = page.page.locator("#messages li[data-role='assistant']").last
    assert answer.evaluate("(li) => [li.childNodes.length, li.firstChild.nodeType, li.textContent]") == [
        1,
        3,  # Node.TEXT_NODE
        turn["text"],
    ]
    assert page.errors() == []


# Tiny model: two turns in seconds; the real model's two turns (and its default system prompt) are in
# test_chat_real_model.py.
def test_a_conversation_goes_through_the_chat_template(chat, chromium_webgpu: Browser, genai_reference) -> None:
    page = chat(chromium_webgpu)
    page.open(ep="wasm")
    page.ready()
    first = page.send("What is the capital of France?")
    second = page.send("And of Italy?")
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": first["text"]},
        {"role": "user", "content": "And of Italy?"},
    ]
    expected = genai_reference(messages, TOKENS)
    assert second["promptText"] == expected["prompt"]
    assert second["promptIds"] == expected["prompt_ids"]
    assert second["ids"] == expected["answer_ids"]
    assert second["messages"] == [*messages, {"role": "assistant", "content": second["text"]}]
    expect(page.page.locator("#messages li")).to_have_count(4)


# Tiny model: its answers never end before max_tokens, so Stop always lands mid-answer.
def test_stop_ends_the_answer_and_the_chat_goes_on(chat, chromium_webgpu: Browser) -> None:
    page = chat(chromium_webgpu)
    # WebGPU on SwiftShader makes a few tokens a second: time enough to press Stop mid-answer.
    page.open(ep="webgpu", tokens=4096)
    page.ready()
    answer = page.page.locator("#messages li[data-role='assistant']").last

    def press_stop_mid_answer() -> None:
        expect(answer).not_to_have_text("", timeout=60_000)
        page.page.click("#stop")

    stopped = page.send(PROMPT, then=press_stop_mid_answer)
    assert stopped["reason"] == "stopped"
    assert 0 < len(stopped["ids"]) < 4096
    assert answer.get_attribute("data-outcome") == "stopped"
    page.page.fill("#max-tokens", "4")
    following = page.send("Go on.")
    assert (following["reason"], len(following["ids"])) == ("max_tokens", 4)
    # The stopped answer is part of the conversation the model sees next.
    assert following["messages"][1] == {"role": "assistant", "content": stopped["text"]}


# Tiny model: random weights make 64 sampled ids almost surely differ from greedy; a real model may agree.
def test_temperature_sampling_stays_in_the_vocabulary_and_differs_from_greedy(chat, chromium_webgpu: Browser) -> None:
    page = chat(chromium_webgpu)
    page.open(ep="wasm", tokens=64)
    page.ready()
    greedy = page.send(PROMPT)
    page.page.fill("#temperature", "1.5")
    page.page.fill("#top-p", "0.95")
    sampled = page.send(PROMPT)
    assert sampled["options"] == {"maxTokens": 64, "temperature": 1.5, "topP": 0.95}
    # At temperature 1.5 the sampler may draw the end-of-sequence token before the 64th (it did in CI).
    assert (sampled["reason"], len(sampled["ids"]) == 64) in {("max_tokens", True), ("eos", False)}
    assert all(0 <= i < 512 for i in sampled["ids"])
    # 64 draws at temperature 1.5 from random weights: the same 64 ids as greedy would be a broken sampler.
    assert sampled["ids"] != greedy["ids"]


# Tiny model: the cache's mechanics in seconds; the real model's second visit is in test_chat_real_model.py.
def test_a_second_visit_reads_the_model_from_the_browser_cache(chat, chromium_plain: Browser) -> None:
    page = chat(chromium_plain)
    page.open(ep="wasm")
    page.ready()
    assert page.page.get_attribute("body", "data-model-source") == "network"
    first = page.model_requests()
    assert {urlsplit(u).path.rsplit("/", 1)[1] for u in first} >= {"model.onnx", "model.onnx.data", "tokenizer.json"}
    page.requests.clear()
    page.page.reload()
    page.ready()
    assert page.page.get_attribute("body", "data-model-source") == "cache"
    assert page.model_requests() == []
    assert "from the browser cache" in page.page.inner_text("#model-status")
    assert page.send("Hi")["ids"]


# Tiny model padded to 768 MiB: the size of a 0.5B model, more than the real model here (200 MB) has.
def test_a_model_of_real_size_loads_and_comes_back_from_the_cache(
    webgpu_playwright: Playwright, webgpu_server: Nginx, genai_reference, tmp_path: Path
) -> None:
    """768 MiB of weights, as a real small model has: more than Chromium reads back from one Blob. In a profile on
    disk, as a person's browser has (an ephemeral context's storage quota would not keep it)."""
    context = launch_chromium_profile(webgpu_playwright, tmp_path / "profile", webgpu=False)
    try:
        page = context.new_page()
        page.goto(f"{webgpu_server.url}/chat?model=real-size&ep=wasm&max_tokens={TOKENS}")
        page.locator(SETTLED).wait_for(state="attached", timeout=300_000)
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#model-error")
        assert page.get_attribute("body", "data-model-source") == "network"
        assert "kept in the browser cache" in page.inner_text("#model-status")
        page.fill("#prompt", PROMPT)
        page.click("#send")
        page.locator("#chat-json[data-seq='1']").wait_for(state="attached", timeout=120_000)
        expected = genai_reference([{"role": "user", "content": PROMPT}], TOKENS)
        assert json.loads(page.text_content("#chat-json") or "{}")["ids"] == expected["answer_ids"]
        page.reload()
        page.locator(SETTLED).wait_for(state="attached", timeout=300_000)
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#model-error")
        assert page.get_attribute("body", "data-model-source") == "cache"
        assert "768.0 MiB of weights" in page.inner_text("#model-info")
    finally:
        context.close()


# Broken copies of the tiny model, and the tiny model to recover with: only the mechanics matter.
@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no-tokenizer", 'the model folder "no-tokenizer" has no tokenizer.json'),
        ("corrupt", 'ONNX Runtime could not load model.onnx of "corrupt" on wasm'),
        ("too-large", '"too-large" is too large for the browser: its weights are 5.0 GiB'),
        ("absent", 'there is no model folder "absent" on this site'),
    ],
)
def test_a_bad_model_folder_is_explained_and_the_page_stays_usable(
    chat, chromium_plain: Browser, model: str, message: str
) -> None:
    page = chat(chromium_plain)
    page.open(model=model, ep="wasm")
    assert page.page.get_attribute("body", "data-state") == "no-model"
    error = page.page.locator("#model-error")
    expect(error).to_be_visible()
    assert message in error.inner_text()
    expect(page.page.locator("#send")).to_be_disabled()
    # Nothing of a model that cannot fit is downloaded.
    assert not [u for u in page.model_requests() if u.endswith("/too-large/model.onnx.data")]
    # Choosing a good model from the page loads it, and the chat works.
    page.page.select_option("#model", "tiny-chat")
    page.page.locator("body[data-state='ready']").wait_for(state="attached", timeout=120_000)
    expect(error).to_be_hidden()
    assert page.send("Hi")["reason"] == "max_tokens"


def test_a_site_without_models_says_how_to_mount_one(chromium_plain: Browser, webgpu_site: Path) -> None:
    with serve(webgpu_site) as server:
        page = ChatPage(chromium_plain, server)
        try:
            page.open(model="", ep="wasm")
            assert page.page.get_attribute("body", "data-state") == "no-model"
            assert "no model folder is mounted on this site" in page.page.inner_text("#model-error")
        finally:
            page.close()
