"""How many requests one upstream takes at once, and who waits for the next free slot.

A CPU runtime shares one throughput among its streams: past some number every answer is too slow to read. So each
upstream takes at most `limit` requests: the number its streams measured it serves well (capacity.py, when
admission is measured), never above `cap`; up to `queue_size` more wait in order for a slot. A bounded queue
trades a quick 429 (with a Retry-After from the measured drain rate) for an unbounded pile-up where every user
waits. A slot freed by a finished request goes straight to the first waiter, so nobody overtakes the queue.

A slot is held as a `Lease`: taken once (`take`, or `wait` in the queue), released exactly once whatever happens
to the request (`release` is idempotent). The holder releases it, on every path: the failover loop until the answer
starts, then the stream relay, which releases it when the stream ends or the client leaves, then reports what the
stream measured (`Lease.report`): the limit learns from it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from foundry_router.capacity import STATIC, Capacity, Mark, Targets


class UpstreamGone(Exception):
    """The upstream went down (or away) while requests waited for it: they go elsewhere."""


class Slots:
    def __init__(self, cap: int, queue_size: int, targets: Targets = STATIC,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.cap = cap
        self.queue_size = queue_size
        # Learns the limit from finished streams (and the drain rate from every request); with targets.measured
        # the learned limit admits, the static cap is only its upper bound.
        self.capacity = Capacity(cap, targets, clock)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._moved: asyncio.Event | None = None  # set when the queue's order changes (Place.ahead)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return self.capacity.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.capacity.load(value)  # the capacity integrates it: each stream's mean concurrency

    @property
    def limit(self) -> int:
        """How many requests are let in at once now: the learned limit under the cap (measured), or the cap."""
        return self.capacity.admits

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.limit and not self._waiters

    @property
    def queue_full(self) -> bool:
        return len(self._waiters) >= self.queue_size

    def take(self) -> Lease:
        self.in_flight += 1
        return Lease(self)

    def join(self) -> Place:
        """A place at the end of the queue, now (no await): the caller `wait`s on it, or `leave`s it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        future.add_done_callback(self._queue_moved)  # every way out of the queue ends its future
        return Place(self, future)

    async def wait(self, place: Place | None = None) -> Lease:
        """Wait for a slot (then it is ours), in `place` or a new one at the end; UpstreamGone if the upstream fails
        meanwhile. The caller bounds the wait (asyncio.timeout): cancelled or timed out, the place is given up."""
        place = place or self.join()
        try:
            await asyncio.shield(place.future)
        except BaseException:
            place.leave()
            raise
        place.settled = True
        return Lease(self)

    def ahead_of(self, future: asyncio.Future[None]) -> int:
        """How many still wait before `future` in the queue (0: it is next)."""
        ahead = 0
        for waiter in self._waiters:
            if waiter is future:
                return ahead
            ahead += not waiter.done()
        return 0

    def moved(self) -> asyncio.Event:
        """An event set at the next change of the queue's order (someone got a slot or left), never one already set
        (a waiter woken by something else would otherwise spin on it)."""
        if self._moved is None or self._moved.is_set():
            self._moved = asyncio.Event()
        return self._moved

    def _queue_moved(self, _future: object = None) -> None:
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    def release(self) -> None:
        """One slot back (to the first waiter, if any). Call it through a Lease, which does it once."""
        self.in_flight = max(0, self.in_flight - 1)
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        """Hand free slots to the first waiters: one freed by a release, or several when the limit was raised (a
        lowered limit hands over nothing until enough have finished)."""
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot is the waiter's from now: counted in flight at once
                self.in_flight += 1

    def observe(self, start: Mark, end: Mark, rate: float | None, ttft: float | None) -> None:
        """A finished stream's measurements (Lease.report): the limit may move, and waiters with it."""
        self.capacity.observe(start, end, rate, ttft)
        self._admit_waiters()

    def expected_wait_seconds(self, ahead: int) -> float | None:
        """Seconds until a request with `ahead` others before it in this queue gets a slot, from the measured
        drain rate (capacity.py); None before any request has given a slot back."""
        return self.capacity.expected_wait_seconds(ahead)

    def fail_waiters(self, reason: str) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamGone(reason))


class Place:
    """One request's place in an upstream's queue, from `Slots.join` until it holds a slot or leaves (`settled`).

    Its number ahead is counted when asked (the queue is short: UPSTREAM_QUEUE_SIZE), not kept per waiter: a place
    that moves up costs nothing until someone wants to tell its client."""

    __slots__ = ("future", "settled", "slots")

    def __init__(self, slots: Slots, future: asyncio.Future[None]) -> None:
        self.slots, self.future, self.settled = slots, future, False

    @property
    def ahead(self) -> int:
        return self.slots.ahead_of(self.future)

    def leave(self) -> None:
        """Give the place up, whatever its state (idempotent): a slot it was handed but nobody took is passed on."""
        future = self.future
        if self.settled:
            return
        self.settled = True  # once only: a slot is passed on once
        if future.done() and not future.cancelled() and future.exception() is None:
            self.slots.release()  # handed a slot just as we gave up: pass it on
        else:
            future.cancel()
            if future in self.slots._waiters:
                self.slots._waiters.remove(future)


class Lease:
    """One slot of one upstream, held by one request; `release` gives it back once, however often it is called.
    A stream's relay then `report`s what it measured: the upstream's capacity learns from it."""

    __slots__ = ("ended", "released", "slots", "started", "taken_at")

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.released = False
        self.started: Mark = slots.capacity.mark()
        self.ended: Mark | None = None
        # On the clock of the stream watcher (foundry_common.sse): the upstream's own time to first token starts
        # here, not at the request's arrival. A wait in the queue is the limit's doing: counted against the
        # upstream, it would lower the limit, which lengthens the queue, which lowers it again.
        self.taken_at = time.perf_counter()

    def release(self) -> None:
        if not self.released:
            self.released = True
            # Marked while still counted in flight: the mean concurrency includes the stream itself.
            self.ended = self.slots.capacity.mark()
            self.slots.release()
            self.slots.capacity.released(self.started, self.ended)

    def report(self, rate: float | None, ttft: float | None) -> None:
        """What the stream measured (its decode rate, tokens/s, and time to first token), once it is released.
        Whole answers do not report: their duration mixes the prompt's processing with the decoding, so a short
        answer to a long prompt would look like a slow upstream; they count for the drain rate only."""
        if self.ended is not None:
            self.slots.observe(self.started, self.ended, rate, ttft)
