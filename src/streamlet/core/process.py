"""The process operators: a user's process function, with state and timers.

Per record the loop sets the current key (which every state handle reads),
calls the function and collects what it emitted; outputs inherit the
record's timestamp, or the timer's in ``on_timer``. Event-time timers fire
when a watermark passes them, before the watermark goes on; processing-time
timers fire from the task's mailbox when the job's clock reaches them.
"""

from __future__ import annotations

import heapq
import inspect
from collections.abc import Callable
from typing import Any

from streamlet.errors import CheckpointError, StreamletConfigError, UserFunctionError
from streamlet.state.backend import KeyedStateBackend, StateBackendFactory
from streamlet.state.descriptors import NO_KEY, KeyRef, descriptors_of
from streamlet.state.snapshots import KeyedRows, OperatorState, keyed_rows, loads, rows_of
from streamlet.time.clock import Clock, TimerHandle
from streamlet.time.timers import TimerQueue

from .batch import Batch
from .control import MIN_WATERMARK
from .functions_process import (
    EVENT_TIME,
    PROCESSING_TIME,
    Context,
    TimedContext,
    TimerService,
    UntimedContext,
)
from .incremental import IncrementalTables
from .operator import DeadLetter, Operator, OperatorContext

_GONE: Any = object()

# How a user method emits: by return, by yield, awaited, or async-yielded.
_RETURNS, _YIELDS, _AWAITS, _ASYNC_YIELDS = range(4)


def _mode(method: Callable[..., Any]) -> int:
    if inspect.isasyncgenfunction(method):
        return _ASYNC_YIELDS
    if inspect.iscoroutinefunction(method):
        return _AWAITS
    if inspect.isgeneratorfunction(method):
        return _YIELDS
    return _RETURNS


class _Emitted:
    """What one batch's worth of calls emitted: values, timestamps, side outputs."""

    __slots__ = ("timestamps", "values")

    def __init__(self, timestamped: bool) -> None:
        self.values: list[Any] = []
        self.timestamps: list[Any] | None = [] if timestamped else None


class ProcessingTimeScheduling:
    """Keeps one clock callback armed at an operator's earliest processing-time
    timer; when it comes due (through the task's mailbox) the operator fires
    what is due and the callback is armed again for the next one."""

    processing_timers: TimerQueue
    timer_context: OperatorContext | None = None
    _scheduled: tuple[int, TimerHandle] | None = None

    async def fire_processing_timers(self, now: int) -> None:
        raise NotImplementedError

    def processing_timer_added(self, timestamp: int) -> None:
        scheduled = self._scheduled
        if scheduled is not None and scheduled[0] <= timestamp:
            return
        if scheduled is not None:
            scheduled[1].cancel()
        assert self.timer_context is not None
        self._scheduled = (timestamp, self.timer_context.call_at(timestamp, self._on_clock))

    async def _on_clock(self) -> None:
        self._scheduled = None
        assert self.timer_context is not None
        await self.fire_processing_timers(self.timer_context.clock.now())
        following = self.processing_timers.peek()
        if following is not None:
            self.processing_timer_added(following)

    def cancel_processing_clock(self) -> None:
        if self._scheduled is not None:
            self._scheduled[1].cancel()
            self._scheduled = None


class ProcessOperatorBase(IncrementalTables, ProcessingTimeScheduling, Operator):
    """Shared by the keyed, non-keyed and two-input process operators."""

    keyed = True

    def __init__(self, name: str, function: Any, on_error: str, state_backend: StateBackendFactory,
                 job: str) -> None:
        self.name = name
        self.function = function
        self.on_error = on_error
        self.state_backend_factory = state_backend
        self.job = job
        self.key_ref = KeyRef()
        self.event_timers = TimerQueue()
        self.processing_timers = TimerQueue()
        self.watermark = MIN_WATERMARK
        self.backend: KeyedStateBackend | None = None
        self.clock: Clock
        timers = TimerService(self, self.key_ref, self.event_timers, self.processing_timers)
        self.ctx = TimedContext(name, timers if self.keyed else None)
        self.untimed_ctx = UntimedContext(name, timers if self.keyed else None)

    def open(self, ctx: OperatorContext) -> None:
        self.timer_context = ctx
        self.clock = ctx.clock
        descriptors = descriptors_of(self.function)
        if descriptors and not self.keyed:
            raise StreamletConfigError(
                f"operator {self.name!r}: {type(self.function).__name__} declares keyed state "
                f"({', '.join(sorted(d.name for d in descriptors.values()))}), but the stream "
                "is not keyed; key_by(...) first and use a KeyedProcessFunction")
        if descriptors:
            self.backend = self.state_backend_factory(self.job, ctx.backend_name(self.name))
            for attribute, descriptor in descriptors.items():
                handle = descriptor.bind(self.backend.table(descriptor.name), self.key_ref,
                                         ctx.clock)
                vars(self.function)[attribute] = handle
        self.function.open()

    async def close(self) -> None:
        self.cancel_processing_clock()
        try:
            self.function.close()
        finally:
            if self.backend is not None:
                self.backend.close()
                self.backend = None
            for attribute in descriptors_of(self.function):
                vars(self.function).pop(attribute, None)

    # -- calling the user function ------------------------------------------------------

    async def _run(self, method: Callable[..., Any], mode: int, batch: Batch) -> None:
        """Call ``method(value, ctx)`` for each record of the batch and emit."""
        values = batch.values
        keys = batch.keys
        tss = batch.timestamps
        emitted = _Emitted(tss is not None)
        out = emitted.values
        out_ts = emitted.timestamps
        ctx: Context = self.ctx if tss is not None else self.untimed_ctx
        ctx._out = out
        key_ref = self.key_ref
        ts: Any = None
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        n = len(values)
        i = 0
        while i < n:
            before = len(out)
            try:
                if mode == _RETURNS and keys is not None and out_ts is not None:
                    assert tss is not None
                    # the hot path: keyed, timestamped, emitting by return or ctx.emit
                    for i in range(i, n):  # noqa: B020  # i names the failing record
                        key_ref.key = ctx.key = keys[i]
                        ts = ctx.timestamp = tss[i]
                        before = len(out)
                        result = method(values[i], ctx)
                        if result is not None:
                            out.append(result)
                        if len(out) != before:
                            out_ts.extend([ts] * (len(out) - before))
                    i = n
                else:
                    while i < n:
                        if keys is not None:
                            key_ref.key = ctx.key = keys[i]
                        if tss is not None:
                            ts = ctx.timestamp = tss[i]
                        before = len(out)
                        await self._call(method, mode, values[i], out, ctx)
                        if out_ts is not None and len(out) != before:
                            out_ts.extend([ts] * (len(out) - before))
                        i += 1
            except Exception as exc:
                del out[before:]  # a failed record emits nothing
                self.failed(batch, i, exc, dead)
                i += 1
        key_ref.key = NO_KEY
        ctx.key = None
        if dead:
            await self.emit_dead_letters(dead)
        await self._flush(emitted, ctx)

    async def _call(self, method: Callable[..., Any], mode: int, value: Any,
                    out: list[Any], ctx: Context) -> None:
        if mode == _YIELDS:
            out.extend(method(value, ctx))
        elif mode == _AWAITS:
            result = await method(value, ctx)
            if result is not None:
                out.append(result)
        elif mode == _ASYNC_YIELDS:
            async for item in method(value, ctx):
                out.append(item)
        else:
            result = method(value, ctx)
            if result is not None:
                out.append(result)

    async def _flush(self, emitted: _Emitted, ctx: Context) -> None:
        side = ctx._side
        if emitted.values:
            await self.output.push(Batch(emitted.values, None, emitted.timestamps))
        if side:
            ctx._side = {}
            for tag, items in side.items():
                target = self.side_outputs.get(tag)
                if target is None:
                    continue  # a tag nobody reads: as in Flink, the records go nowhere
                stamps = [ts for _, ts in items]
                await target.push(Batch([v for v, _ in items], None,
                                        None if None in stamps else stamps))

    # -- timers -------------------------------------------------------------------------

    async def _fire(self, queue: TimerQueue, until: int, domain: str) -> None:
        if not queue.buckets:
            return
        on_timer = self.function.on_timer
        mode = _mode(on_timer)
        emitted = _Emitted(True)
        out = emitted.values
        out_ts = emitted.timestamps
        assert out_ts is not None
        ctx = self.ctx
        ctx._out = out
        ctx.time_domain = domain
        key_ref = self.key_ref
        heap = queue.heap
        buckets = queue.buckets
        key: Any = NO_KEY
        timestamp = 0
        try:
            # As Flink does, look at the queue again after every timer: on_timer
            # may set a timer that is already due, and it fires in time order.
            while heap and heap[0] <= until:
                timestamp = heap[0]
                bucket = buckets.get(timestamp)
                if not bucket:
                    heapq.heappop(heap)
                    buckets.pop(timestamp, None)
                    continue
                ctx.timestamp = timestamp
                before = len(out)
                for key in list(bucket):
                    if bucket.pop(key, _GONE) is _GONE:
                        continue  # deleted by an earlier on_timer
                    key_ref.key = ctx.key = key
                    if mode == _RETURNS:
                        result = on_timer(timestamp, ctx)
                        if result is not None:
                            out.append(result)
                    elif mode == _YIELDS:
                        out.extend(on_timer(timestamp, ctx))
                    else:
                        await self._call(on_timer, mode, timestamp, out, ctx)
                    if heap[0] < timestamp:
                        break  # an earlier timer was just set: it goes first
                out_ts.extend([timestamp] * (len(out) - before))
        except Exception as exc:
            raise UserFunctionError(self.name, f"on_timer({timestamp}) [{domain}]", exc, key,
                                    True) from exc
        finally:
            key_ref.key = NO_KEY
            ctx.key = None
            ctx.time_domain = None
        await self._flush(emitted, ctx)

    async def on_watermark(self, timestamp: int) -> None:
        if timestamp <= self.watermark:
            return
        self.watermark = timestamp
        await self._fire(self.event_timers, timestamp, EVENT_TIME)
        await Operator.on_watermark(self, timestamp)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> KeyedRows:
        """Keyed state rows ``(key, "state", name, value)`` (only the changed ones
        when the backend tracks changes, see ``incremental``) and timers ``(key,
        domain, timestamp, position)``; the watermark in the meta part."""
        rows, base = self.table_rows(self.backend, checkpoint_id)
        for domain, queue in ((EVENT_TIME, self.event_timers),
                              (PROCESSING_TIME, self.processing_timers)):
            rows.extend((key, domain, ts, position)
                        for position, (key, ts) in enumerate(queue.items()))
        return keyed_rows(self.watermark, rows, base)

    def restored(self, checkpoint_id: int, increments: int) -> None:
        self.tables_restored(self.backend, checkpoint_id, increments)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.tables_checkpointed(checkpoint_id)

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        self.watermark = loads(state.meta)
        timers: dict[str, list[tuple[int, Any, int]]] = {EVENT_TIME: [], PROCESSING_TIME: []}
        for row in rows_of(state):
            if row[1] == "state":
                if self.backend is None:
                    raise CheckpointError(
                        f"operator {self.name!r}: the checkpoint has keyed state {row[2]!r}, "
                        "but the function declares no state; declare it again, or start "
                        "without the checkpoint")
                self.backend.table(row[2])[row[0]] = row[3]
            else:
                timers[row[1]].append((row[3], row[0], row[2]))
        self.event_timers.restore(timers[EVENT_TIME])
        self.processing_timers.restore(timers[PROCESSING_TIME])
        earliest = self.processing_timers.peek()
        if earliest is not None:
            self.processing_timer_added(earliest)

    async def fire_processing_timers(self, now: int) -> None:
        await self._fire(self.processing_timers, now, PROCESSING_TIME)


class KeyedProcessOperator(ProcessOperatorBase):
    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        self._process = self.function.process
        self._mode = _mode(self._process)

    async def process(self, batch: Batch) -> None:
        await self._run(self._process, self._mode, batch)


class ProcessOperator(KeyedProcessOperator):
    """A ``ProcessFunction`` on a stream that is not keyed."""

    keyed = False


class CoProcessOperator(ProcessOperatorBase):
    """``connect(...).process(CoProcessFunction)``: two keyed inputs, one keyed state."""

    two_inputs = True

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        first = self.function.process_element1
        second = self.function.process_element2
        self._methods = ((first, _mode(first)), (second, _mode(second)))

    async def process(self, batch: Batch) -> None:
        await self.process_input(0, batch)

    async def process_input(self, index: int, batch: Batch) -> None:
        method, mode = self._methods[index]
        await self._run(method, mode, batch)
