"""A failing test's report carries the logs of what the tests started (tests/support/logs.py, conftest.py)."""

from __future__ import annotations

import gc

import pytest

from tests.support.logs import register, sections

pytestmark = pytest.mark.unit


class Service:
    def __init__(self, text: str) -> None:
        self.text = text
        self.project = "fs-example"

    def log(self) -> str:
        return self.text


def test_the_end_of_each_log_still_around_is_a_section() -> None:
    service = Service("\n".join(f"line {n}" for n in range(100)))
    register(service)
    (title, text) = next((t, x) for t, x in sections() if "fs-example" in t)
    assert title == "log of Service fs-example"
    assert text.splitlines() == [f"line {n}" for n in range(40, 100)], "the last 60 lines"
    del service
    gc.collect()
    assert not [t for t, _ in sections() if "fs-example" in t], "a stopped, dropped process leaves the list"
