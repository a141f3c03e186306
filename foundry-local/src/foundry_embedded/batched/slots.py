"""The rows decoding together and their key/value caches, one decode step for all of them.

One preallocated cache per past name, [slots, kv_heads, capacity, head_size], bound as both the past input and the
present output (IOBinding): GroupQueryAttention then writes only each row's new position, instead of copying every
row's past into a new present at every step. Row i lives in slot i: a join copies its prefilled cache into the next
slot; a leave moves the last row into the hole (one row's copy); the capacity doubles (one full copy) when a row is
about to outgrow it.

Fewer rows than MIN_ROWS are topped up with empty dummy rows (length 0: they attend to their own new position only;
their output is ignored). Why: MatMulNBits (int4 weights, int8 activations at accuracy_level 4) has a kernel of its
own for a single row (MLAS's M=1 path), whose results differ from the many-row kernel's (its zero-point correction is
summed differently: logits differ by up to ~0.6 on SmolLM2), while with two rows or more each row's result is the
same whatever the others are. So a question asked alone is answered exactly as it would be among others, greedy ids
identical. The price is small with one intra-op thread (process.THREADS): a two-row step took about as long as a
one-row one (~12 ms on SmolLM2-135M, 2 cores); with two threads the one-row kernel alone was faster (~8.5 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundry_embedded.batched.model import StepModel

MIN_ROWS = 2
FIRST_CAPACITY = 256


@dataclass
class Row:
    """One answer being generated: `length` cache positions are valid; `last` is the token to feed next."""

    job: object
    length: int
    last: int


class SlotBatch:
    """Memory: slots x capacity per cache, both doubling on demand (up to max_rows slots) and back to the smallest
    whenever the batch empties: one long conversation alone takes 2 slots of its length, not max_rows."""

    def __init__(self, model: StepModel, max_rows: int) -> None:
        self.model = model
        self.rows: list[Row] = []
        self.max_rows = max(max_rows, MIN_ROWS)
        self.cache = self._empty(MIN_ROWS, FIRST_CAPACITY)
        self.logits = np.empty((self.max_rows, 1, model.vocab), dtype=np.float32)

    def _empty(self, slots: int, capacity: int) -> list[np.ndarray]:
        shape = (slots, self.model.kv_heads, capacity, self.model.head_size)
        return [np.zeros(shape, dtype=np.float32) for _ in self.model.past_names]

    @property
    def slots(self) -> int:
        return self.cache[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.cache[0].shape[2]

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.max_rows

    def _fit(self, rows: int, length: int) -> None:
        """Room for `rows` rows of `length` positions: a copy into larger caches when there is not."""
        slots, capacity = self.slots, self.capacity
        while slots < rows:
            slots = min(2 * slots, self.max_rows)
        while capacity < length:
            capacity *= 2
        if (slots, capacity) == (self.slots, self.capacity):
            return
        count, grown = len(self.rows), self._empty(slots, capacity)
        for old, new in zip(self.cache, grown, strict=True):
            new[:count, :, : old.shape[2]] = old[:count]
        self.cache = grown

    def join(self, row: Row, cache: list[np.ndarray]) -> None:
        """A prefilled row, its cache as StepModel.prefill returned it."""
        self._fit(len(self.rows) + 1, row.length + 1)
        slot = len(self.rows)
        for mine, its in zip(self.cache, cache, strict=True):
            mine[slot, :, : its.shape[2]] = its[0]
        self.rows.append(row)

    def leave(self, row: Row) -> None:
        i, last = self.rows.index(row), len(self.rows) - 1
        if i != last:  # the last row moves into the hole, up to its own length
            length = self.rows[last].length
            for a in self.cache:
                a[i, :, :length] = a[last, :, :length]
            self.rows[i] = self.rows[last]
        self.rows.pop()
        if not self.rows and (self.slots, self.capacity) != (MIN_ROWS, FIRST_CAPACITY):
            self.cache = self._empty(MIN_ROWS, FIRST_CAPACITY)  # what a long conversation took goes back

    def step(self) -> np.ndarray:
        """Feed every row its `last` token: the next-token logits of each row, [rows, vocab] (valid until the next
        step); each row's length grows by one."""
        model, count = self.model, len(self.rows)
        n = max(count, MIN_ROWS)
        width = max(r.length for r in self.rows) + 1
        self._fit(n, width)
        mask = np.zeros((n, width), dtype=np.int64)
        ids = np.zeros((n, 1), dtype=np.int64)
        mask[count:, 0] = 1  # dummy rows: length 0
        for i, row in enumerate(self.rows):
            mask[i, : row.length + 1] = 1
            ids[i, 0] = row.last
        binding = model.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        for past, present, a in zip(model.past_names, model.present_names, self.cache, strict=True):
            shape = [n, *a.shape[1:]]
            binding.bind_input(past, "cpu", 0, np.float32, shape, a.ctypes.data)
            binding.bind_output(present, "cpu", 0, np.float32, shape, a.ctypes.data)
        binding.bind_output("logits", "cpu", 0, np.float32, [n, 1, model.vocab], self.logits.ctypes.data)
        model.session.run_with_iobinding(binding)
        for row in self.rows:
            row.length += 1
        return self.logits[:count, 0]
