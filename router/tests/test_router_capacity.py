"""Admission from measured capacity (capacity.py through admission.Slots), on a clock and a throughput curve the
test controls: the limit ramps up to what keeps every stream above the floor, backs off when the rate drops, never
passes the static cap, recovers after a slow phase; the drain rate gives the expected wait and the Retry-After."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from foundry_router.admission import Slots
from foundry_router.capacity import Targets, decode_rate
from foundry_router.failover import retry_after_seconds
from foundry_router.upstreams import Upstream, UpstreamStatus

pytestmark = pytest.mark.unit

FLOOR, BOUND, CAP = 8.0, 2.0, 16
MEASURED = Targets(measured=True, rate_floor=FLOOR, ttft_bound=BOUND)
# One stream's decode rate and time to first token when n run at once.
Curve = Callable[[int], tuple[float, float]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shared(aggregate: float, single: float = 108.0, ttft_per_stream: float = 0.1) -> Curve:
    """A CPU runtime (issue 24's table): one fixed throughput shared by the streams; TTFT grows with their number."""
    return lambda n: (min(single, aggregate / n), 0.05 + ttft_per_stream * n)


def generation(slots: Slots, clock: Clock, curve: Curve, demand: int = 1000, seconds: float = 5.0) -> int:
    """As many streams as admission lets in (at most `demand`) run together for `seconds` and report; how many ran."""
    leases = []
    while len(leases) < demand and slots.has_room:
        leases.append(slots.take())
    clock.now += seconds
    rate, ttft = curve(len(leases))
    for lease in leases:
        lease.release()
        lease.report(rate, ttft)
    return len(leases)


def run(slots: Slots, clock: Clock, curve: Curve, generations: int, demand: int = 1000) -> list[int]:
    return [generation(slots, clock, curve, demand) for _ in range(generations)]


def measured_slots(cap: int = CAP, targets: Targets = MEASURED) -> tuple[Slots, Clock]:
    clock = Clock()
    return Slots(cap, queue_size=64, targets=targets, clock=clock), clock


def test_the_limit_ramps_up_to_what_keeps_every_stream_above_the_floor_and_stays() -> None:
    slots, clock = measured_slots()
    curve = shared(96.0)  # 96 tokens/s in all: 12 streams at 8 tokens/s each
    ran = run(slots, clock, curve, 12)
    assert ran[0] == 4, "nothing measured yet: the initial limit"
    assert ran[-6:] == [12] * 6, ran
    assert all(curve(n)[0] >= FLOOR for n in ran), "no stream ever ran below the floor"
    assert slots.limit == 12 and slots.capacity.limit == 12


def test_it_backs_off_when_the_rate_drops_and_recovers_after_the_slow_phase() -> None:
    slots, clock = measured_slots()
    run(slots, clock, shared(96.0), 12)
    assert slots.limit == 12
    slow = run(slots, clock, shared(24.0), 12)  # another process takes the CPU: 3 streams at 8 tokens/s
    assert slow[0] == 12 and slow[-4:] == [3] * 4, slow
    assert all(a >= b for a, b in itertools.pairwise(slow)), f"only down while slow: {slow}"
    recovered = run(slots, clock, shared(96.0), 12)
    assert recovered[-4:] == [12] * 4, recovered


def test_never_above_the_static_cap_nor_below_one() -> None:
    slots, clock = measured_slots(cap=6)
    fast = run(slots, clock, shared(10_000.0, single=200.0), 10)
    assert max(fast) == 6 and fast[-1] == 6, fast
    crawling = run(slots, clock, shared(2.0), 10)  # no stream can keep the floor, even alone
    assert min(crawling) == 1 and crawling[-1] == 1, crawling
    assert slots.limit == 1


def test_time_to_first_token_bounds_the_limit_too() -> None:
    slots, clock = measured_slots()
    ran = run(slots, clock, shared(10_000.0, single=200.0, ttft_per_stream=0.45), 12)
    # 0.05 + 0.45 n <= 2.0 up to n = 4
    assert ran[-4:] == [4] * 4, ran


def test_a_limit_that_is_not_reached_is_not_raised() -> None:
    slots, clock = measured_slots()
    ran = run(slots, clock, shared(96.0), 8, demand=2)  # two users: the limit is not what holds anyone back
    assert ran == [2] * 8 and slots.limit == 4


def test_static_admission_takes_the_cap_whatever_it_learns() -> None:
    slots, clock = measured_slots(targets=Targets(measured=False, rate_floor=FLOOR, ttft_bound=BOUND))
    ran = run(slots, clock, shared(24.0), 4)
    assert ran == [CAP] * 4
    assert slots.capacity.limit < CAP, "it still learns (metrics, /readyz), but the cap admits"


def test_streams_admitted_before_a_change_do_not_decide() -> None:
    slots, clock = measured_slots()
    run(slots, clock, shared(96.0), 12)
    leases = [slots.take() for _ in range(12)]
    clock.now += 5
    for lease in leases:  # all twelve report a rate far below the floor, in one go
        lease.release()
        lease.report(2.0, 0.5)
    assert slots.limit == 9, "one cut by a quarter, not one per stream"


def test_a_raised_limit_lets_waiters_in_and_a_lowered_one_holds_them() -> None:
    async def go() -> None:
        slots, clock = measured_slots()
        leases = [slots.take() for _ in range(4)]
        waiters = [asyncio.create_task(slots.wait()) for _ in range(7)]
        await asyncio.sleep(0)
        assert slots.queued == 7 and slots.in_flight == 4
        clock.now += 5
        leases[0].release()  # its slot goes to the first waiter
        leases[0].report(96.0, 0.2)  # a stream at 4 met both targets with room to spare: raised to 8, 4 more in
        held = await asyncio.gather(*waiters[:5])
        assert (slots.limit, slots.in_flight, slots.queued) == (8, 8, 2)
        clock.now += 5
        held[0].release()  # its slot goes to the next waiter, then its report lowers the limit by a quarter
        held[0].report(1.0, 0.2)
        assert (slots.limit, slots.in_flight, slots.queued) == (6, 8, 1)
        for lease in held[1:3]:
            lease.release()  # 8 in flight under a limit of 6: the slots freed are not handed on
        assert (slots.in_flight, slots.queued) == (6, 1) and not slots.has_room
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    asyncio.run(go())


def test_the_expected_wait_comes_from_the_drain_rate() -> None:
    slots, clock = measured_slots()
    assert slots.expected_wait_seconds(3) is None, "nothing measured yet"
    for _ in range(10):
        leases = [slots.take() for _ in range(4)]
        clock.now += 2.0
        for lease in leases:
            lease.release()  # whole answers too: every slot given back counts
    # Four slots, each held 2 s: one frees every half second; the fourth in line gets one after 2 s.
    assert slots.limit == 4
    assert slots.expected_wait_seconds(0) == pytest.approx(0.5)
    assert slots.expected_wait_seconds(3) == pytest.approx(2.0)


def test_retry_after_is_the_wait_behind_the_shortest_queue_else_the_old_guess() -> None:
    def status(name: str, hold: float | None, queued: int) -> UpstreamStatus:
        slots, clock = measured_slots()
        if hold is not None:
            lease = slots.take()
            clock.now += hold
            lease.release()
        slots._waiters.extend(asyncio.get_running_loop().create_future() for _ in range(queued))
        return UpstreamStatus(Upstream(name, f"http://{name}/v1", "k"), slots, ttft_seconds=0.4)

    async def go() -> None:
        # Four slots held 8 s: one frees every 2 s; behind 7 waiters, the eighth place is 16 s away; 3 s at b.
        assert retry_after_seconds([status("a:1", 8.0, 7), status("b:1", 4.0, 2)]) == pytest.approx(3.0)
        assert retry_after_seconds([status("c:1", None, 3)]) == pytest.approx(0.8), "nothing measured: 2 x TTFT"

    asyncio.run(go())


def test_decode_rate_needs_enough_tokens() -> None:
    assert decode_rate(11, 10.0, 11.0) == pytest.approx(10.0)
    assert decode_rate(3, 10.0, 11.0) is None
    assert decode_rate(20, None, None) is None
    assert decode_rate(20, 10.0, 10.0) is None
