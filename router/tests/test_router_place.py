"""A place in an upstream's queue (admission.Place) and what its client is told (waiting.announce): the number ahead
follows the queue as others get a slot or leave, a place left in any state leaves nothing behind, and the client
hears its place at once, at each change and as a heartbeat."""

from __future__ import annotations

import asyncio

import pytest

from foundry_common.protocol import queue_place
from foundry_router import waiting as waiting_module
from foundry_router.admission import Slots
from foundry_router.routing import Target
from foundry_router.upstreams import Upstream, UpstreamStatus
from foundry_router.waiting import Queued, Waiting, announce, expected_wait

pytestmark = pytest.mark.unit


def test_the_number_ahead_follows_the_queue() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=4)
        holder = slots.take()
        first, second, third = slots.join(), slots.join(), slots.join()
        assert [p.ahead for p in (first, second, third)] == [0, 1, 2]
        moved = slots.moved()
        second.leave()  # its client left
        await asyncio.wait_for(moved.wait(), 5)
        assert [first.ahead, third.ahead] == [0, 1] and slots.queued == 2
        moved = slots.moved()
        holder.release()  # the slot goes to the first
        await asyncio.wait_for(moved.wait(), 5)
        lease = await slots.wait(first)
        assert third.ahead == 0 and slots.in_flight == 1
        third.leave()
        lease.release()
        assert (slots.in_flight, slots.queued) == (0, 0)

    asyncio.run(go())


def test_the_next_change_is_never_an_event_already_set() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=2)
        woken = slots.moved()
        woken.set()  # as a waiting request's own wake-up does (Waiting.follow)
        assert not slots.moved().is_set()  # the next wait waits for a real change

    asyncio.run(go())


def test_a_place_handed_a_slot_that_nobody_takes_passes_it_on() -> None:
    async def go() -> None:
        slots = Slots(cap=1, queue_size=2)
        holder = slots.take()
        place, behind = slots.join(), slots.join()
        holder.release()  # the slot goes to `place`, which leaves before taking it
        place.leave()
        place.leave()  # once only
        assert behind.future.done() and slots.in_flight == 1
        (await slots.wait(behind)).release()
        assert (slots.in_flight, slots.queued) == (0, 0)

    asyncio.run(go())


def test_the_client_hears_its_place_at_once_at_each_change_and_as_a_heartbeat(monkeypatch) -> None:
    monkeypatch.setattr(waiting_module, "HEARTBEAT_SECONDS", 0.05)

    async def go() -> list[tuple[int, float | None]]:
        slots = Slots(cap=1, queue_size=4)
        slots.take()
        status = UpstreamStatus(Upstream("127.0.0.1:1", "http://127.0.0.1:1/v1", "none"), slots)
        ahead_of_it = slots.join()
        queued = Queued(Target(status.upstream, "m", "test"), status, slots.join(), [], {})
        waiting = Waiting()
        waiting.follow(queued)
        told: asyncio.Queue[bytes] = asyncio.Queue()

        async def send(message: dict) -> None:
            await told.put(message["body"])

        notices = asyncio.create_task(announce(waiting, send))
        try:
            places = [queue_place(await asyncio.wait_for(told.get(), 5))]
            ahead_of_it.leave()
            places.append(queue_place(await asyncio.wait_for(told.get(), 5)))
            places.append(queue_place(await asyncio.wait_for(told.get(), 5)))  # nothing changed: the heartbeat
        finally:
            notices.cancel()
            queued.place.leave()
        return places  # type: ignore[return-value]

    assert [ahead for ahead, _ in asyncio.run(go())] == [1, 0, 0]


def test_the_expected_wait_grows_with_the_place() -> None:
    status = UpstreamStatus(Upstream("127.0.0.1:1", "http://127.0.0.1:1/v1", "none"), Slots(cap=2, queue_size=4))
    assert expected_wait(status, 0) is None  # nothing measured yet: no time rather than a wrong one
    status.observe_ttft(0.5)  # a first measure: a guess from it until the slots have a drain rate
    waits = [expected_wait(status, ahead) for ahead in range(4)]
    assert all(w is not None and w >= 0 for w in waits)
    assert waits == sorted(waits)
