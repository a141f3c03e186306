"""max_tokens for clients that send none: the room the prompt leaves, and the retry from a refusal's counts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry_common.chat_request import Budget, context_refusal
from foundry_common.protocol import error_body
from foundry_router.fitting import estimate_prompt_tokens, fit_max_tokens, has_max_tokens, room_from_refusal

pytestmark = pytest.mark.unit


def test_the_default_when_it_fits() -> None:
    assert fit_max_tokens(context_length=4096, prompt_tokens=100, default=512) == 512


def test_the_room_left_when_the_default_does_not_fit() -> None:
    assert fit_max_tokens(context_length=4096, prompt_tokens=3900, default=512) == 196


def test_at_least_one_token_even_when_nothing_fits() -> None:
    # The upstream then refuses with its own counts, which the client reads.
    assert fit_max_tokens(context_length=256, prompt_tokens=900, default=512) == 1


@given(st.integers(256, 1_000_000), st.integers(0, 2_000_000), st.integers(1, 100_000))
def test_never_more_than_the_default_or_the_room(context: int, prompt: int, default: int) -> None:
    fitted = fit_max_tokens(context, prompt, default)
    assert 1 <= fitted <= default
    assert fitted <= max(1, context - prompt)


def test_the_estimate_counts_text_and_parts_generously() -> None:
    messages = [
        {"role": "system", "content": "x" * 30},
        {"role": "user", "content": [{"type": "text", "text": "y" * 31}, {"type": "image_url", "image_url": {}}]},
    ]
    assert estimate_prompt_tokens(messages) == 10 + 11 + 2 * 4  # three characters per token, rounded up
    assert estimate_prompt_tokens("not a list") == 0


def test_room_from_a_refusal_written_by_the_gateways_code() -> None:
    # The contract: the router reads the fields the gateway's own code writes (not a copy of its sentence).
    refusal = context_refusal(Budget(prompt=3950, output=512, context=4096), max_tokens_defaulted=True)
    assert room_from_refusal(refusal.body) == 146
    reworded = json.loads(refusal.body)
    reworded["error"]["message"] = "Reworded: nothing to parse here."
    assert room_from_refusal(json.dumps(reworded).encode()) == 146


def test_room_from_the_runtimes_own_refusal() -> None:
    # The host's Foundry Local runtime, straight behind the router: its own words (as in test_chat_request.py).
    message = "request requires 4462 total tokens (3950 input + 512 output), which exceeds the model's maximum "
    message += "context length of 4096 tokens"
    assert room_from_refusal(error_body(message, "runtime_error")) == 146


def test_no_room_or_no_counts_is_none() -> None:
    too_long = context_refusal(Budget(prompt=5000, output=1, context=4096), max_tokens_defaulted=False)
    assert room_from_refusal(too_long.body) is None
    assert room_from_refusal(error_body("Invalid 'temperature'", "invalid_value")) is None
    assert room_from_refusal(b"not json") is None


def test_max_completion_tokens_counts_as_sent() -> None:
    assert has_max_tokens({"max_completion_tokens": 5}) and has_max_tokens({"max_tokens": 5})
    assert not has_max_tokens({"max_tokens": None})
