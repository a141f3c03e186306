"""FOUNDRY_ENGINE: the embedded service with the real model, on both engines, under 8 concurrent streams (issue 24).

Each question has its expected word (a capital SmolLM2-135M names), so an answer that belongs to another question,
or is cut or mixed, fails by meaning; greedy answers served together must equal each question's answer served alone.
The batched engine's answers are identical, not merely alike: it decodes a lone request with MatMulNBits' many-row
kernel, as in a batch (foundry_embedded/batched/slots.py says why). Its tokens/s are a benchmark's business
(scripts/bench batching), not a test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import ValidationError
from tokenizers import Tokenizer

from foundry_embedded.batched.model import StepModel
from foundry_embedded.batched.scheduler import Job, Params, Scheduler
from foundry_embedded.batched.text import TextStream
from foundry_embedded.settings import Settings
from tests.support.process import GatewayProcess, ready_gateway, wait_until

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer concisely."}
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Egypt": "Cairo", "the United Kingdom": "London", "Russia": "Moscow",
    "China": "Beijing", "Greece": "Athens", "Canada": "Ottawa",
}  # fmt: skip
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def batched_gateway(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The embedded service serving the real model with FOUNDRY_ENGINE=batched."""
    tmp = tmp_path_factory.mktemp("batched-gateway")
    with ready_gateway(tmp, FOUNDRY_MODEL_PATH=str(chat_model), FOUNDRY_ENGINE="batched") as service:
        yield service


@pytest.fixture(params=["foundry", "batched"])
def service(request: pytest.FixtureRequest) -> GatewayProcess:
    return request.getfixturevalue("chat_gateway" if request.param == "foundry" else "batched_gateway")


async def ask(client: openai.AsyncOpenAI, model: str, country: str) -> tuple[str, str, int]:
    """One streamed greedy answer: its text, finish_reason and the usage's completion tokens."""
    question = {"role": "user", "content": f"What is the capital of {country}?"}
    stream = await client.chat.completions.create(
        model=model, messages=[SYSTEM, question], max_tokens=MAX_TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    text, finish, tokens = "", None, 0
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return text, finish, tokens


@pytest.mark.integration
def test_eight_concurrent_streams_answer_their_own_questions_as_alone(service: GatewayProcess) -> None:
    async def run() -> tuple[dict, dict]:
        client = openai.AsyncOpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)
        model = service.healthz().json()["model"]
        alone = {country: await ask(client, model, country) for country in CAPITALS}
        together = await asyncio.gather(*(ask(client, model, country) for country in CAPITALS))
        return alone, dict(zip(CAPITALS, together, strict=True))

    alone, together = asyncio.run(run())
    for country, capital in CAPITALS.items():
        text, finish, tokens = together[country]
        assert capital in text, f"{country}: {text!r}"
        assert finish in ("stop", "length") and 0 < tokens <= MAX_TOKENS, (country, finish, tokens)
        assert together[country] == alone[country], f"{country}: together {text!r}, alone {alone[country][0]!r}"


@pytest.mark.integration
def test_batched_engine_serves_whole_answers_and_words_context_overflow(batched_gateway: GatewayProcess) -> None:
    model = batched_gateway.healthz().json()["model"]
    question = [SYSTEM, {"role": "user", "content": "What is the capital of Japan?"}]
    url = f"{batched_gateway.url}/v1/chat/completions"
    answer = httpx.post(url, json={"model": model, "messages": question, "max_tokens": 24}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert "Tokyo" in answer.json()["choices"][0]["message"]["content"]
    assert answer.json()["usage"]["prompt_tokens"] > 0
    # SmolLM2's context is 8192 tokens: the engine refuses in the runtime's words, the gateway says what to do.
    refused = httpx.post(url, json={"model": model, "messages": question, "max_tokens": 8190}, timeout=60)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.integration
def test_a_request_whose_client_left_leaves_the_batch(chat_model: Path) -> None:
    # What the server does when a client goes away (its generator's `finally`): the row must stop decoding.
    model = StepModel(chat_model, threads=1)
    scheduler = Scheduler(model, max_rows=8)
    scheduler.start()
    try:

        async def first_tokens() -> Job:
            prompt = model.prompt_ids([SYSTEM, {"role": "user", "content": "Tell me a very long story."}])
            job = Job(prompt, Params(max_tokens=4000), asyncio.get_running_loop())
            scheduler.submit(job)
            assert (await job.events.get())[0] == "token"
            job.cancelled = True
            return job

        job = asyncio.run(first_tokens())
        wait_until(lambda: not scheduler.batch.rows, 30, "the cancelled row to leave the batch")
        assert job.generated < 100
    finally:
        scheduler.stop()


async def tokens_of(job: Job) -> list[int]:
    ids = []
    while (event := await job.events.get())[0] == "token":
        ids.append(event[1])
    assert event[0] == "end", event
    return ids


@pytest.mark.integration
def test_rows_that_join_grow_and_leave_mid_answer_change_no_token(chat_model: Path) -> None:
    # A long prompt joining mid-answer grows the caches (slots and length: copies), rows of different lengths
    # leave in turn (the last row moves into the hole): each answer's greedy ids must stay those it has alone.
    model = StepModel(chat_model, threads=1)
    scheduler = Scheduler(model, max_rows=8)
    scheduler.start()
    long_text = " ".join(f"{country} has {capital} as its capital." for country, capital in CAPITALS.items()) * 5
    texts = ("Explain how a bicycle works.", long_text + " Which capital is the largest?", "Describe a lighthouse.")
    prompts = [model.prompt_ids([SYSTEM, {"role": "user", "content": text}]) for text in texts]
    assert len(prompts[1]) > 300, "the long prompt must outgrow the first capacity (256)"
    try:

        async def staggered() -> list[list[int]]:
            loop = asyncio.get_running_loop()
            jobs = [Job(p, Params(max_tokens=24 + 8 * i), loop) for i, p in enumerate(prompts)]
            scheduler.submit(jobs[0])
            first = await jobs[0].events.get()  # the others join once the first is decoding
            for job in jobs[1:]:
                scheduler.submit(job)
            answers = await asyncio.gather(*(tokens_of(job) for job in jobs))
            return [[first[1], *answers[0]], *answers[1:]]

        async def alone() -> list[list[int]]:
            loop = asyncio.get_running_loop()
            out = []
            for i, p in enumerate(prompts):
                job = Job(p, Params(max_tokens=24 + 8 * i), loop)
                scheduler.submit(job)
                out.append(await tokens_of(job))
            return out

        expected = asyncio.run(alone())
        assert asyncio.run(staggered()) == expected
    finally:
        scheduler.stop()


@pytest.fixture(scope="module")
def tokenizer(chat_model: Path) -> Tokenizer:
    return Tokenizer.from_file(str(chat_model / "tokenizer.json"))


@pytest.mark.unit
@pytest.mark.parametrize("text", ["Paris is the capital of France.", "Café crème, 東京 and 🚲 wheels."])
def test_text_stream_gives_back_the_text_token_by_token(tokenizer: Tokenizer, text: str) -> None:
    stream = TextStream(tokenizer, [])
    pieces = [stream.push(token) for token in tokenizer.encode(text, add_special_tokens=False).ids]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in piece for piece in pieces), "half a character went out"


@pytest.mark.unit
def test_text_stream_cuts_at_a_stop_string_and_holds_its_start_back(tokenizer: Tokenizer) -> None:
    stream = TextStream(tokenizer, ["END", "capital"])
    out = ""
    for token in tokenizer.encode("Paris is the capital of France. END", add_special_tokens=False).ids:
        out += stream.push(token)
        assert "capital" not in out and not out.endswith(" cap")
        if stream.stopped:
            break
    assert stream.stopped
    assert out + stream.flush() == "Paris is the "


@pytest.mark.unit
@pytest.mark.parametrize(("value", "engine"), [("", "foundry"), ("Batched", "batched"), ("foundry", "foundry")])
def test_foundry_engine_setting(monkeypatch: pytest.MonkeyPatch, value: str, engine: str) -> None:
    monkeypatch.setenv("FOUNDRY_ENGINE", value)
    assert Settings().foundry_engine == engine


@pytest.mark.unit
def test_an_unknown_foundry_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_ENGINE", "gpu")
    with pytest.raises(ValidationError, match="FOUNDRY_ENGINE"):
        Settings()
