"""How many requests one upstream takes at once, and who waits for the next free slot.

A small model on a CPU answers a few requests at once as fast as one; past that every answer slows down.
So each upstream takes at most `cap` requests, and up to `queue_size` more wait in order for a slot. A
bounded queue trades a quick 429 (with Retry-After) for an unbounded pile-up where every user waits.
A slot freed by a finished request goes straight to the first waiter, so nobody overtakes the queue.

A slot is held as a `Lease`: taken once (`take`, or `wait` in the queue), released exactly once whatever happens
to the request (`release` is idempotent). The holder releases it, on every path: the failover loop until the answer
starts, then the stream relay, which releases it when the stream ends or the client leaves.
"""

from __future__ import annotations

import asyncio
from collections import deque


class UpstreamGone(Exception):
    """The upstream went down (or away) while requests waited for it: they go elsewhere."""


class Slots:
    def __init__(self, cap: int, queue_size: int) -> None:
        self.cap = cap
        self.queue_size = queue_size
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.cap and not self._waiters

    @property
    def queue_full(self) -> bool:
        return len(self._waiters) >= self.queue_size

    def take(self) -> Lease:
        self.in_flight += 1
        return Lease(self)

    async def wait(self) -> Lease:
        """Wait for a slot (then it is ours); UpstreamGone if the upstream fails meanwhile. The caller bounds
        the wait (asyncio.timeout): cancelled or timed out, the place in the queue is given up."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.shield(waiter)
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot just as we gave up: pass it on
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            raise
        return Lease(self)

    def release(self) -> None:
        """One slot back (to the first waiter, if any). Call it through a Lease, which does it once."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: in_flight stays the same
                return
        self.in_flight = max(0, self.in_flight - 1)

    def fail_waiters(self, reason: str) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamGone(reason))


class Lease:
    """One slot of one upstream, held by one request; `release` gives it back once, however often it is called."""

    __slots__ = ("released", "slots")

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slots.release()
