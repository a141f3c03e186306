"""Continuous batching: one thread owns the model and the batch; requests join between two decode steps and leave
as soon as they end, so a newcomer waits one step (plus its own prefill), never for the batch to finish.

Trade-offs: a newcomer's prefill runs between two steps, alone (no chunked prefill): the others' next token is late
by one prefill, and a long prompt delays them all. At most `max_rows` rows decode together; more requests wait in
arrival order. Sampling is per request (its own seeded generator), so a row's tokens never depend on its companions.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass

import numpy as np
import structlog

from foundry_embedded.batched.model import StepModel
from foundry_embedded.batched.slots import Row, SlotBatch

log = structlog.get_logger("foundry_embedded.batched")


@dataclass(frozen=True)
class Params:
    max_tokens: int
    temperature: float | None = None  # None or 0: greedy
    top_p: float = 1.0
    seed: int | None = None


def pick(logits: np.ndarray, params: Params, rng: np.random.Generator) -> int:
    """The next token: the most likely one (greedy), or a sample at `temperature` within the `top_p` mass."""
    if not params.temperature:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / params.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if params.top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), params.top_p)) + 1]
        kept = np.zeros_like(p)
        kept[keep] = p[keep]
        p = kept / kept.sum()
    return int(rng.choice(p.size, p=p))


class Job:
    """One request: its prompt and parameters in; its tokens, then its end, out to the event loop that asked.

    Events on `events`: ("token", id), ("end", finish_reason), ("error", message)."""

    def __init__(self, prompt: list[int], params: Params, loop: asyncio.AbstractEventLoop) -> None:
        self.prompt, self.params = prompt, params
        self.rng = np.random.default_rng(params.seed)
        self.events: asyncio.Queue = asyncio.Queue()
        self.generated = 0
        self.cancelled = False  # set by the event loop when the client leaves (or a stop string ends the answer)
        self._loop = loop

    def send(self, kind: str, value: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # its event loop has closed (the server is stopping): nobody is listening
            self.cancelled = True


class Scheduler:
    def __init__(self, model: StepModel, max_rows: int) -> None:
        self.model, self.max_rows = model, max_rows
        self.batch = SlotBatch(model, max_rows)
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="batched-decoder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        self.waiting.put(job)

    def stop(self) -> None:
        self.waiting.put(None)
        self.thread.join(10)

    def _run(self) -> None:
        while self._admit():
            if self.batch.rows:
                self._step()

    def _admit(self) -> bool:
        """Prefill what waits, while there is room (blocking only when nothing decodes); False once stopped."""
        while not self.batch.full:
            try:
                job = self.waiting.get(block=not self.batch.rows)
            except queue.Empty:
                return True
            if job is None:
                return False
            if not job.cancelled:
                self._start(job)
        return True

    def _start(self, job: Job) -> None:
        try:
            logits, cache = self.model.prefill(job.prompt)
        except Exception as exc:
            log.exception("prefill_failed")
            job.send("error", f"{type(exc).__name__}: {exc}")
            return
        row = Row(job, len(job.prompt), 0)
        if self._emit(row, logits):
            self.batch.join(row, cache)

    def _emit(self, row: Row, logits: np.ndarray) -> bool:
        """The row's next token to its job; whether the row goes on."""
        job = row.job
        if job.cancelled:
            return False
        token = pick(logits, job.params, job.rng)
        if token in self.model.eos:
            job.send("end", "stop")
            return False
        job.generated += 1
        job.send("token", token)
        context = self.model.context_length
        if job.generated >= job.params.max_tokens or (context and row.length + 1 >= context):
            job.send("end", "length")
            return False
        row.last = token
        return True

    def _step(self) -> None:
        for row in [r for r in self.batch.rows if r.job.cancelled]:
            self.batch.leave(row)
        if not self.batch.rows:
            return
        try:
            logits = self.batch.step()
        except Exception as exc:
            log.exception("decode_step_failed", rows=len(self.batch.rows))
            for row in self.batch.rows:
                row.job.send("error", f"{type(exc).__name__}: {exc}")
            self.batch = SlotBatch(self.model, self.max_rows)
            return
        ended = [row for row, its in zip(list(self.batch.rows), logits, strict=True) if not self._emit(row, its)]
        for row in ended:
            self.batch.leave(row)
