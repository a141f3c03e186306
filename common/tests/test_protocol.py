"""The queue's words on the wire (protocol.py): the place-in-the-queue comment and the where comment read back as
written, are SSE comments (ignored by every SSE client: a line that starts with a colon), and nothing else reads as
one of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry_common.protocol import (
    UPSTREAM_HEADER,
    queue_comment,
    queue_place,
    where_comment,
    where_headers,
)

pytestmark = pytest.mark.unit


@given(st.integers(min_value=0, max_value=10_000), st.none() | st.floats(min_value=0, max_value=1e6))
def test_a_queue_comment_reads_back_as_its_place(ahead: int, wait: float | None) -> None:
    comment = queue_comment(ahead, wait)
    assert comment.startswith(b":") and comment.endswith(b"\n\n") and comment.count(b"\n") == 2  # one comment event
    line = comment.decode().rstrip("\n")
    place = queue_place(line)
    assert place is not None and place[0] == ahead
    assert place[1] is None if wait is None else place[1] == pytest.approx(wait, abs=0.051)  # to 0.1 s
    assert queue_place(line.encode()) == place


@pytest.mark.parametrize(
    "line",
    ["", ": ping", 'data: {"ahead": 1}', ": foundry-queue not json", ': foundry-queue {"wait_seconds": 1}',
     ': foundry-queue {"ahead": "x"}', ": foundry-queue [1]"],
)  # fmt: skip
def test_other_lines_are_not_a_place(line: str) -> None:
    assert queue_place(line) is None


def test_a_where_comment_carries_only_our_headers() -> None:
    comment = where_comment({"X-Foundry-Upstream": "a\u00e9", "content-type": "text/event-stream", "x-request-id": "1"})
    assert comment.startswith(b":") and comment.endswith(b"\n\n") and comment.count(b"\n") == 2
    assert where_headers(comment.decode().rstrip("\n")) == {UPSTREAM_HEADER: "a\u00e9"}
    assert where_headers(": foundry-where [1]") is None and where_headers(": foundry-where {") is None
    assert where_headers(queue_comment(1, 2.0)) is None and queue_place(comment) is None
