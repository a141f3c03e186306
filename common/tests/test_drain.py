"""The drain's rule (foundry_common/drain.py), on a clock the test moves: when a stopping service may exit."""

from __future__ import annotations

import pytest

from foundry_common.drain import Drain

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(notice: float = 5, grace: float = 30, quiet: float = 1) -> tuple[Drain, Clock]:
    clock = Clock()
    return Drain(notice, grace, quiet, clock=clock), clock


def test_nothing_finishes_before_the_stop_begins() -> None:
    d, clock = drain(notice=0)
    clock.now += 1000
    assert not d.draining and not d.finished()


def test_an_idle_service_exits_after_the_notice() -> None:
    d, clock = drain(notice=5)
    d.begin()
    clock.now += 4.9
    assert d.draining and not d.finished()
    clock.now += 0.1
    assert d.finished()


def test_without_notice_an_idle_service_exits_at_once() -> None:
    d, _ = drain(notice=0)
    d.begin()
    assert d.finished()


def test_work_in_flight_holds_the_exit_then_a_quiet_second_follows() -> None:
    d, clock = drain(notice=5, quiet=1)
    d.begin()
    with d.work():
        clock.now += 20
        assert not d.finished()
    clock.now += 0.5
    assert not d.finished(), "a browser asks right after it connects: the exit waits for a quiet second"
    clock.now += 0.5
    assert d.finished()


def test_the_grace_period_ends_the_wait_whatever_is_left() -> None:
    d, clock = drain(notice=5, grace=30)
    d.begin()
    with d.work():
        clock.now += 29.9
        assert not d.finished()
        clock.now += 0.1
        assert d.finished() and d.in_flight == 1


def test_a_second_begin_keeps_the_first_start() -> None:
    d, clock = drain(notice=5)
    d.begin()
    clock.now += 3
    d.begin()
    assert d.waited() == 3
