"""Token coalescing between a fast upstream and the browser.

Every Socket.IO message costs the service CPU time that all sessions share; a small local model can emit
thousands of tokens a second. The first token goes out at once (time to first token is untouched); later
tokens go out together, at most one message per interval per session, which people still read as smooth
streaming. A timer sends what is waiting when the upstream pauses, so a token is never held back longer
than one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class CoalescingStream:
    def __init__(self, sink: Callable[[str], Awaitable[None]], interval: float) -> None:
        self._sink = sink
        self._interval = interval
        self._buffer: list[str] = []
        self._last_sent = float("-inf")
        self._timer: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # one write to the sink at a time, in order

    async def push(self, token: str) -> None:
        self._buffer.append(token)
        loop = asyncio.get_running_loop()
        wait = self._last_sent + self._interval - loop.time()
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(wait))

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._last_sent = asyncio.get_running_loop().time()
            await self._sink(text)

    async def close(self) -> None:
        """Send what is left (the end of the answer) and stop the timer."""
        await self._cancel_timer()
        await self.flush()

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None
        await self.flush()

    async def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
