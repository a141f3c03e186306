"""The per-upstream cap and bounded queue: first come first served, and nothing lost or leaked."""

from __future__ import annotations

import asyncio

import pytest

from foundry_router.admission import Slots, UpstreamGone

pytestmark = pytest.mark.unit


def test_room_until_the_cap() -> None:
    slots = Slots(cap=2, queue_size=1)
    assert slots.has_room
    slots.take()
    slots.take()
    assert not slots.has_room and not slots.queue_full
    slots.release()
    assert slots.has_room and slots.in_flight == 1


def test_a_freed_slot_goes_to_the_first_waiter_in_order() -> None:
    async def go() -> list[str]:
        slots = Slots(cap=1, queue_size=2)
        slots.take()
        served: list[str] = []

        async def wait(name: str) -> None:
            await slots.wait()
            served.append(name)

        first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
        await asyncio.sleep(0)
        assert slots.queued == 2 and slots.queue_full
        slots.release()
        await first
        assert slots.in_flight == 1 and slots.queued == 1  # handed over, not freed
        slots.release()
        await second
        slots.release()
        assert slots.in_flight == 0 and slots.queued == 0
        return served

    assert asyncio.run(go()) == ["first", "second"]


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=1)
        slots.take()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await slots.wait()
        assert slots.queued == 0 and not slots.queue_full
        slots.release()
        assert slots.in_flight == 0

    asyncio.run(go())


def test_a_slot_handed_over_as_the_waiter_is_cancelled_is_passed_on() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=2)
        slots.take()
        first = asyncio.create_task(slots.wait())
        second = asyncio.create_task(slots.wait())
        await asyncio.sleep(0)
        slots.release()  # the slot goes to `first`...
        first.cancel()  # ...which is cancelled before it runs: `second` must get it
        await asyncio.gather(first, return_exceptions=True)
        await second
        assert slots.in_flight == 1 and slots.queued == 0

    asyncio.run(go())


def test_waiters_of_an_upstream_that_fails_are_told_so() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=2)
        slots.take()
        waiter = asyncio.create_task(slots.wait())
        await asyncio.sleep(0)
        slots.fail_waiters("up:1 could not be reached")
        with pytest.raises(UpstreamGone, match="could not be reached"):
            await waiter
        assert slots.queued == 0 and slots.in_flight == 1

    asyncio.run(go())
