"""The relay passes upstream bytes on in whole lines only (proxy.py `WholeLines`): whatever the chunks, the client
gets every complete line unchanged and never half of one; an error event of ours starts on a fresh event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry_router.proxy import WholeLines

pytestmark = pytest.mark.unit

STREAM = st.binary(max_size=400).map(lambda b: b.replace(b"\x00", b"\n"))  # plenty of line ends


@given(STREAM, st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_any_chunking_passes_on_exactly_the_complete_lines(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    lines = WholeLines()
    passed = [lines.push(chunk) for chunk in chunks]
    assert all(p == b"" or p.endswith(b"\n") for p in passed)
    end = data.rfind(b"\n") + 1
    assert b"".join(passed) == data[:end]
    assert lines.partial == data[end:]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"", b"data: {}\n\n"),  # nothing sent yet
        (b'data: {"a": 1}\n\n', b"data: {}\n\n"),  # after a whole event
        (b'data: {"a": 1}\n\ndata: {"b"', b"data: {}\n\n"),  # the half line is dropped
        (b'data: {"a": 1}\n', b"\ndata: {}\n\n"),  # an event left open is ended first
    ],
)
def test_an_error_event_starts_on_a_fresh_event(sent: bytes, expected: bytes) -> None:
    lines = WholeLines()
    lines.push(sent)
    assert lines.then(b"data: {}\n\n") == expected
    assert lines.partial == b""
