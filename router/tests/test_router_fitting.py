"""max_tokens for clients that send none: the room the prompt leaves, and the retry from a refusal's counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    assert estimate_prompt_tokens(messages) == 10 + 11 + 2 * 4
    assert estimate_prompt_tokens("not a list") == 0


def test_room_from_the_gateways_refusal() -> None:
    message = (
        "The prompt (3950 tokens) and max_tokens (512, the default added when a request sends none) need 4462 "
        "tokens, more than the model's context of 4096 tokens: shorten the conversation."
    )
    assert room_from_refusal(message) == 146


def test_room_from_the_runtimes_own_refusal() -> None:
    message = "Request requires 4462 total tokens (3950 input + 512 output), exceeding the context length of 4096."
    assert room_from_refusal(message) == 146


def test_no_room_or_no_counts_is_none() -> None:
    assert (
        room_from_refusal("The prompt (5000 tokens) and max_tokens (1) need 5001, more than the context of 4096 tokens")
        is None
    )
    assert room_from_refusal("Invalid 'temperature'") is None


def test_max_completion_tokens_counts_as_sent() -> None:
    assert has_max_tokens({"max_completion_tokens": 5}) and has_max_tokens({"max_tokens": 5})
    assert not has_max_tokens({"max_tokens": None})
