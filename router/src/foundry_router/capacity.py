"""How many streams one upstream serves well at once, learned from what its finished streams measured.

A CPU runtime shares one fixed throughput among its streams: each extra stream slows every other one, and from
some number on no answer is readable any more. That number depends on the machine and the model, so it is learned
per upstream instead of set: each finished stream reports the concurrency it ran at (the time-weighted mean of the
upstream's in-flight count over its life: a stream that started alone but ran beside seven others decoded at the
rate of eight), its decode rate (tokens/s after the first token) and its time to first token. Averages are kept
per concurrency level (rounded), so that what was measured at 3 never blurs what happens at 8.

The rule (docs/router.md, "Admission from measured capacity"):
- raise, when a stream that ran at the limit met both targets: to the largest m (at most double the level, never
  above the static cap) that the worse of the stream and its level's averages still meets under the worst case of
  a shared runtime (the aggregate throughput stays fixed, so each stream gets rate*n/m; TTFT grows in proportion,
  ttft*m/n);
- lower by a quarter (at least by one, never below 1), when a stream that ran at or under the limit and its level's
  average both missed a target (one odd stream is not a trend): the level it ran at is too many;
- only streams that started after the last change decide (as TCP cuts once per round trip): streams admitted
  under the old limit report the old conditions.
Trade-off: feedback comes once a stream ends, so the limit moves once per answer's length; the worst-case model
makes the raise fast (straight to the predicted level) and its error is corrected by the next measurement.

The drain estimate (for Retry-After and a waiter's expected wait) is the upstream's slots over the mean time a
request holds one (Little's law). Counting finishes per second would measure the load, not the capacity: after a
quiet hour it would promise a burst of users a wait of hours. A queue only forms when the slots are full, and
then slots over holding time is exactly how fast they free.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# What nothing measured yet means: the static default of earlier versions, safe on a small CPU.
INITIAL_LIMIT = 4
BACKOFF = 0.75
# Weight of the newest stream in its level's averages: responsive, yet one odd stream moves them only halfway.
LEVEL_WEIGHT = 0.5
# Weight of the newest holding time in the mean that gives the drain rate.
HOLD_WEIGHT = 0.2
# Fewer output tokens than this give no decode rate worth trusting (one chunk's jitter is the whole answer).
MIN_RATE_TOKENS = 4


@dataclass(frozen=True)
class Targets:
    """What admission keeps every stream within: a decode rate above `rate_floor` (tokens/s) and a time to first
    token under `ttft_bound` (s). With `measured` False the static cap alone admits (the rule still learns)."""

    measured: bool
    rate_floor: float
    ttft_bound: float


STATIC = Targets(measured=False, rate_floor=0.0, ttft_bound=math.inf)


@dataclass(frozen=True)
class Mark:
    """A point in the upstream's life: the time and the in-flight count integrated up to it."""

    at: float
    area: float


def decode_rate(tokens: int, first_token_at: float | None, last_token_at: float | None) -> float | None:
    """Tokens per second after the first one, when the stream had enough of them to say."""
    if tokens < MIN_RATE_TOKENS or first_token_at is None or last_token_at is None:
        return None
    seconds = last_token_at - first_token_at
    return (tokens - 1) / seconds if seconds > 0 else None


def ewma(previous: float | None, sample: float, weight: float) -> float:
    return sample if previous is None else previous + weight * (sample - previous)


@dataclass
class Level:
    """The running averages of the streams that ran at one concurrency level."""

    rate: float | None = None
    ttft: float | None = None

    def observe(self, rate: float | None, ttft: float | None) -> None:
        if rate is not None:
            self.rate = ewma(self.rate, rate, LEVEL_WEIGHT)
        if ttft is not None:
            self.ttft = ewma(self.ttft, ttft, LEVEL_WEIGHT)


@dataclass
class Capacity:
    """One upstream's learned concurrency limit and drain rate, on an injectable clock."""

    cap: int
    targets: Targets = STATIC
    clock: Callable[[], float] = time.monotonic
    limit: int = 0
    in_flight: int = 0
    levels: dict[int, Level] = field(default_factory=dict)
    hold_seconds: float | None = None  # mean time a request holds its slot
    last_rate: float | None = None  # the decode rate at the level last measured (metrics)
    changed_at: float = -math.inf
    _area: float = 0.0
    _since: float = field(init=False)

    def __post_init__(self) -> None:
        self.limit = self.limit or min(self.cap, INITIAL_LIMIT)
        self._since = self.clock()

    @property
    def admits(self) -> int:
        """The number of requests admission lets in at once."""
        return min(self.cap, self.limit) if self.targets.measured else self.cap

    # -- what happens on the upstream ---------------------------------------------------------------

    def load(self, in_flight: int) -> None:
        """The in-flight count changed: integrate the old one up to now."""
        now = self.clock()
        self._area += self.in_flight * (now - self._since)
        self._since, self.in_flight = now, in_flight

    def mark(self) -> Mark:
        now = self.clock()
        return Mark(now, self._area + self.in_flight * (now - self._since))

    def released(self, start: Mark, end: Mark) -> None:
        """A slot held from `start` to `end` came back (any request, however it ended): the drain rate."""
        self.hold_seconds = ewma(self.hold_seconds, max(0.0, end.at - start.at), HOLD_WEIGHT)

    def expected_wait_seconds(self, ahead: int) -> float | None:
        """Seconds until a request with `ahead` others before it in the queue gets a slot; None before any
        request has given one back."""
        if not self.hold_seconds:
            return None
        return (max(0, ahead) + 1) * self.hold_seconds / max(1, self.admits)

    # -- the rule -------------------------------------------------------------------------------------

    def observe(self, start: Mark, end: Mark, rate: float | None, ttft: float | None) -> None:
        """A stream that held its slot from `start` to `end` measured this decode rate and time to first token."""
        if rate is None and ttft is None:
            return
        seconds = end.at - start.at
        concurrency = (end.area - start.area) / seconds if seconds > 0 else self.in_flight
        level = max(1, math.floor(concurrency + 0.5))
        averages = self.levels.setdefault(level, Level())
        averages.observe(rate, ttft)
        self.last_rate = averages.rate
        if start.at < self.changed_at:
            return  # admitted under the previous limit: it ran in conditions that no longer hold
        if self.missed(rate, ttft, averages):
            if level <= self.limit:
                self.change(max(1, min(self.limit - 1, math.floor(min(self.limit, level) * BACKOFF))), end.at)
        elif level >= self.limit and rate is not None and ttft is not None:
            # The worse of the stream and its level's average: a stale average must not raise it on its own.
            worse = Level(min(rate, averages.rate or rate), max(ttft, averages.ttft or ttft))
            self.change(max(self.limit, self.raised(level, worse)), end.at)

    def missed(self, rate: float | None, ttft: float | None, averages: Level) -> bool:
        """The stream and its level's average both missed a target (one slow stream alone is not a trend)."""
        floor, bound = self.targets.rate_floor, self.targets.ttft_bound
        slow = rate is not None and averages.rate is not None and rate < floor and averages.rate < floor
        late = ttft is not None and averages.ttft is not None and ttft > bound and averages.ttft > bound
        return slow or late

    def raised(self, level: int, measured: Level) -> int:
        """The largest limit that what was measured at `level` meets under the worst case of a shared runtime, at
        most double the level."""
        rate, ttft = measured.rate or 0.0, measured.ttft or 0.0
        floor, bound = self.targets.rate_floor, self.targets.ttft_bound
        by_rate = math.floor(rate * level / floor) if floor > 0 else self.cap
        by_ttft = math.floor(bound * level / ttft) if ttft > 0 and bound < math.inf else self.cap
        return min(self.cap, 2 * level, by_rate, by_ttft)

    def change(self, limit: int, now: float) -> None:
        if limit != self.limit:
            self.limit, self.changed_at = limit, now
