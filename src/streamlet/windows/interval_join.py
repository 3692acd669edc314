"""The interval join (Flink's ``IntervalJoinOperator``).

A left record ``l`` and a right record ``r`` of the same key join when
``l.ts + lower <= r.ts <= l.ts + upper`` (both bounds inclusive). Each side
buffers its records per key; a record is dropped from the buffer once the
watermark shows nothing on the other side can match it any more: a left
record after ``l.ts + upper``, a right one after ``r.ts - lower``. Records
that arrive behind the watermark are late and counted (``dropped_late``),
as Flink drops them. A joined pair carries the larger of the two timestamps.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from streamlet.core.batch import Batch
from streamlet.core.control import MIN_WATERMARK
from streamlet.core.operator import DeadLetter, Operator, OperatorContext, add_outputs
from streamlet.errors import InvalidTimestampError
from streamlet.state.backend import KeyedStateBackend, StateBackendFactory
from streamlet.state.snapshots import KeyedRows, OperatorState, keyed_rows, loads, rows_of
from streamlet.time.timers import TimerQueue

_GONE: Any = object()


class IntervalJoinOperator(Operator):
    two_inputs = True

    def __init__(self, name: str, lower: int, upper: int, fn: Callable[[Any, Any], Any],
                 on_error: str, state_backend: StateBackendFactory, job: str) -> None:
        self.name = name
        self.lower = lower
        self.upper = upper
        self.fn = fn
        self.on_error = on_error
        self.state_backend_factory = state_backend
        self.job = job
        self.watermark = MIN_WATERMARK
        self.dropped_late = 0
        self.cleanup = TimerQueue()  # timer keys are (side, key)
        self.backend: KeyedStateBackend | None = None

    def open(self, ctx: OperatorContext) -> None:
        self.backend = self.state_backend_factory(self.job, ctx.backend_name(self.name))
        self.buffers = (self.backend.table("left"), self.backend.table("right"))

    async def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> KeyedRows:
        """Both sides' buffered records and the cleanup timers by key group."""
        rows: list[tuple[Any, ...]] = []
        for side, buffer in enumerate(self.buffers):
            rows.extend((key, "buffer", side, records) for key, records in buffer.items())
        rows.extend((slot[1], "timer", slot[0], ts, position)
                    for position, (slot, ts) in enumerate(self.cleanup.items()))
        return keyed_rows((self.watermark, self.dropped_late), rows)

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        self.watermark, self.dropped_late = loads(state.meta)
        timers: list[tuple[int, Any, int]] = []
        for row in rows_of(state):
            if row[1] == "buffer":
                self.buffers[row[2]][row[0]] = row[3]
            else:
                timers.append((row[4], (row[2], row[0]), row[3]))
        self.cleanup.restore(timers)

    def statistics(self) -> dict[str, int]:
        return {"dropped_late": self.dropped_late}

    async def process(self, batch: Batch) -> None:
        await self.process_input(0, batch)

    async def process_input(self, index: int, batch: Batch) -> None:
        keys = batch.keys
        tss = batch.timestamps
        assert keys is not None, "an interval join runs behind key_by"
        if tss is None:
            raise InvalidTimestampError(
                self.name, "an interval join needs event time on both inputs; use "
                "assign_timestamps(...) upstream")
        mine, theirs = self.buffers[index], self.buffers[1 - index]
        out: list[Any] = []
        out_ts: list[int] = []
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        for i, value in enumerate(batch.values):
            key = keys[i]
            ts = tss[i]
            if ts < self.watermark:
                self.dropped_late += 1
                continue
            entries = mine.get(key) or []
            entries.append((ts, value))
            mine[key] = entries
            if index == 0:
                low, high = ts + self.lower, ts + self.upper
            else:
                low, high = ts - self.upper, ts - self.lower
            try:
                for other_ts, other in theirs.get(key) or ():
                    if low <= other_ts <= high:
                        left, right = (value, other) if index == 0 else (other, value)
                        before = len(out)
                        add_outputs(out, self.fn(left, right))
                        out_ts.extend([max(ts, other_ts)] * (len(out) - before))
            except Exception as exc:
                self.failed(batch, i, exc, dead)
            expiry = ts + self.upper if index == 0 else ts - self.lower
            self.cleanup.register((index, key), expiry)
        if dead:
            await self.emit_dead_letters(dead)
        if out:
            await self.output.push(Batch(out, None, out_ts))

    async def on_watermark(self, timestamp: int) -> None:
        if timestamp <= self.watermark:
            return
        self.watermark = timestamp
        heap = self.cleanup.heap
        buckets = self.cleanup.buckets
        while heap and heap[0] < timestamp:  # nothing at or after the watermark can match
            time = heapq.heappop(heap)
            for side, key in buckets.pop(time, ()):
                table = self.buffers[side]
                entries = table.get(key)
                if not entries:
                    continue
                if side == 0:
                    kept = [e for e in entries if e[0] + self.upper >= timestamp]
                else:
                    kept = [e for e in entries if e[0] - self.lower >= timestamp]
                if kept:
                    table[key] = kept
                else:
                    table.pop(key, None)
        await Operator.on_watermark(self, timestamp)
