"""The window operator: Flink's ``WindowOperator`` on streamlet's keyed state and timers.

Per record: the assigner names its windows (session windows first merge with
the key's windows they touch); windows already past their cleanup time are
skipped; the record is added to each remaining window's contents (an
accumulator for ``reduce``/``aggregate``, the records themselves for
``process`` or with an evictor); the trigger says whether to fire or purge.
A record skipped by all its windows is late: it goes to the late-data side
output, or is counted in ``dropped_late``.

Timers are keyed by (key, window). When one fires, the trigger decides; at a
window's cleanup time (end - 1 + allowed lateness in event time) its
contents and trigger state are dropped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any

from streamlet.core.batch import Batch
from streamlet.core.control import MIN_WATERMARK
from streamlet.core.incremental import IncrementalTables
from streamlet.core.operator import DeadLetter, Operator, OperatorContext, add_outputs
from streamlet.core.process import ProcessingTimeScheduling
from streamlet.errors import InvalidTimestampError, StreamletConfigError, UserFunctionError
from streamlet.state.backend import KeyedStateBackend, StateBackendFactory
from streamlet.state.descriptors import AggregateFunction
from streamlet.state.snapshots import (
    TABLE_ROW,
    KeyedRows,
    OperatorState,
    keyed_rows,
    loads,
    rows_of,
)
from streamlet.time.clock import Clock
from streamlet.time.timers import TimerQueue

from .assigners import MAX_TIMESTAMP, Count, Session, TimeWindow, Tumbling, WindowAssigner
from .evictors import CountEvictor, Evictor
from .triggers import Trigger, TriggerResult

REDUCE, AGGREGATE, PROCESS = "reduce", "aggregate", "process"
_ABSENT: Any = object()
_FRESH: Any = object()  # no shared initial accumulator: create_accumulator() per window
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), frozenset)


def _immutable(value: Any) -> bool:
    if type(value) is tuple:
        return all(map(_immutable, value))
    return type(value) in _IMMUTABLE


def shared_initial(function: AggregateFunction[Any]) -> Any:
    """The accumulator every window starts from, when one value can serve them all.

    ``create_accumulator`` returns a fresh accumulator; when what it returns is
    immutable (numbers, strings, None, tuples of them), every window may start
    from the same one, and a call per window is saved. A function whose calls
    return different values keeps being called per window (``_FRESH``), and so
    does one that fails here: it will fail again, on a record, and be reported.
    """
    try:
        first = function.create_accumulator()
        second = function.create_accumulator()
    except Exception:
        return _FRESH
    if _immutable(first) and type(second) is type(first) and second == first:
        return first
    return _FRESH


class _Purged:
    """The contents of a session window a trigger purged: empty, but the window
    lives on (it still spans its session, as in Flink). Pickles as itself."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "PURGED"

    def __repr__(self) -> str:
        return "PURGED"


PURGED: Any = _Purged()


def _merge_plan(window: TimeWindow, contents: dict[Any, Any]
                ) -> tuple[TimeWindow, list[TimeWindow]]:
    """The session window a record's ``window`` ends up in, and the key's windows
    that merge into it (by start; none when it is new or falls inside one)."""
    touching = [w for w in contents if w.intersects(window)]
    if not touching:
        return window, []
    merged = window
    for w in touching:
        merged = merged.cover(w)
    if len(touching) == 1 and touching[0] == merged:
        return merged, []
    return merged, sorted(touching, key=lambda w: (w.start, w.end))


class WindowResult(tuple[Any, Any, Any]):
    """One firing of one window: ``key``, ``window`` (``.start``, ``.end``) and ``value``.

    A tuple underneath, so that making one costs a C call: windows fire as
    often as records arrive in sparse keyed streams.
    """

    __slots__ = ()

    def __new__(cls, key: Any, window: Any, value: Any) -> WindowResult:
        return tuple.__new__(cls, (key, window, value))

    def __getnewargs__(self) -> tuple[Any, Any, Any]:  # so that pickle rebuilds it
        return (self[0], self[1], self[2])

    key = property(itemgetter(0), doc="The key of the window.")
    window = property(itemgetter(1), doc="The window: .start, .end (exclusive).")
    value = property(itemgetter(2), doc="The reduced or aggregated value.")

    def __repr__(self) -> str:
        return f"WindowResult(key={self[0]!r}, window={self[1]!r}, value={self[2]!r})"


_make_result = tuple.__new__


class _TriggerContext:
    """The trigger's view: the current key and window, timers, per-window state."""

    __slots__ = ("key", "op", "window")

    def __init__(self, op: WindowOperator) -> None:
        self.op = op
        self.key: Any = None
        self.window: Any = None

    def current_watermark(self) -> int:
        return self.op.watermark

    def current_processing_time(self) -> int:
        return self.op.clock.now()

    def register_event_time_timer(self, time: int) -> None:
        self.op.event_timers.register((self.key, self.window), time)

    def register_processing_time_timer(self, time: int) -> None:
        if self.op.processing_timers.register((self.key, self.window), time):
            self.op.processing_timer_added(time)

    def delete_event_time_timer(self, time: int) -> None:
        self.op.event_timers.delete((self.key, self.window), time)

    def delete_processing_time_timer(self, time: int) -> None:
        self.op.processing_timers.delete((self.key, self.window), time)

    def get_state(self, name: str, default: Any = None) -> Any:
        found = self.op.trigger_state.get((self.key, self.window))
        return default if found is None else found.get(name, default)

    def set_state(self, name: str, value: Any) -> None:
        slot = (self.key, self.window)
        states = self.op.trigger_state
        found = states.get(slot)
        if value is None:
            if found is not None:
                found.pop(name, None)
                if not found:
                    del states[slot]
            return
        if found is None:
            found = states[slot] = {}
        found[name] = value


class WindowOperator(IncrementalTables, ProcessingTimeScheduling, Operator):
    def __init__(self, name: str, *, assigner: WindowAssigner, trigger: Trigger | None,
                 evictor: Evictor | None, lateness_ms: int, late_tag: str | None, kind: str,
                 function: Any, window_function: Callable[..., Any] | None, on_error: str,
                 state_backend: StateBackendFactory, job: str) -> None:
        self.name = name
        self.assigner = assigner
        self.trigger = trigger if trigger is not None else assigner.default_trigger()
        if evictor is None and isinstance(assigner, Count) and assigner.slide is not None:
            evictor = CountEvictor(assigner.n)
        self.evictor = evictor
        self.lateness_ms = lateness_ms if assigner.is_event_time else 0
        self.late_tag = late_tag
        self.kind = kind
        self.function = function
        self.window_function = window_function
        self.on_error = on_error
        self.state_backend_factory = state_backend
        self.job = job
        self.keeps_elements = kind == PROCESS or evictor is not None
        self.event_timers = TimerQueue()
        self.processing_timers = TimerQueue()
        self.trigger_state: dict[tuple[Any, Any], dict[str, Any]] = {}
        self.watermark = MIN_WATERMARK
        self.dropped_late = 0
        self.clock: Clock
        self.backend: KeyedStateBackend | None = None

        self._tctx = _TriggerContext(self)
        if assigner.is_merging and not self.trigger.can_merge():
            raise StreamletConfigError(
                f"operator {name!r}: {self.trigger!r} cannot merge, so it cannot be used "
                f"with merging windows ({assigner!r})")

    def open(self, ctx: OperatorContext) -> None:
        self.timer_context = ctx
        self.clock = ctx.clock
        self.backend = self.state_backend_factory(self.job, ctx.backend_name(self.name))
        self.contents = self.backend.table("window-contents")

    async def close(self) -> None:
        self.cancel_processing_clock()
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def statistics(self) -> dict[str, int]:
        return {"dropped_late": self.dropped_late}

    # -- helpers ------------------------------------------------------------------------

    def _cleanup_time(self, window: Any) -> int:
        if not self.assigner.is_event_time:
            return int(window.max_timestamp)
        cleanup: int = window.max_timestamp + self.lateness_ms
        return cleanup if cleanup >= window.max_timestamp else MAX_TIMESTAMP

    def _is_late(self, window: Any) -> bool:
        return self.assigner.is_event_time and self._cleanup_time(window) <= self.watermark

    def _add(self, acc: Any, value: Any, ts: int) -> Any:
        if acc is PURGED:
            acc = _ABSENT
        if self.keeps_elements:
            if acc is _ABSENT:
                return [(value, ts)]
            acc.append((value, ts))
            return acc
        if self.kind == REDUCE:
            return value if acc is _ABSENT else self.function(acc, value)
        agg: AggregateFunction[Any] = self.function
        if acc is _ABSENT:
            acc = agg.create_accumulator()
        return agg.add(value, acc)

    def _merge_contents(self, a: Any, b: Any) -> Any:
        if a is PURGED:
            a = _ABSENT
        if b is PURGED:
            b = _ABSENT
        if a is _ABSENT:
            return b
        if b is _ABSENT:
            return a
        if self.keeps_elements:
            return a + b
        if self.kind == REDUCE:
            return self.function(a, b)
        return self.function.merge(a, b)

    # -- records ------------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        keys = batch.keys
        assert keys is not None, "window runs behind key_by"
        event_time = self.assigner.is_event_time
        tss = self._event_times(batch) if event_time else batch.timestamps
        out: list[Any] = []
        out_ts: list[int] = []
        late: list[tuple[Any, int]] = []
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        uses_clock = self.assigner.uses_clock
        for i, value in enumerate(batch.values):
            key = keys[i]
            # triggers and evictors see the record's own timestamp, as in Flink;
            # processing-time assigners place the record by the clock
            now = self.clock.now() if uses_clock or tss is None else 0
            ts = tss[i] if tss is not None else now
            try:
                if not self._process_one(key, value, ts, now if uses_clock else ts, out,
                                         out_ts) and event_time and (
                        ts + self.lateness_ms <= self.watermark):
                    late.append((value, ts))
            except Exception as exc:
                self.failed(batch, i, exc, dead)
        await self._send(out, out_ts, dead, late)

    def _event_times(self, batch: Batch) -> list[int]:
        tss = batch.timestamps
        if tss is None:
            raise InvalidTimestampError(
                self.name, "event-time windows need timestamps; give the stream event time "
                "with assign_timestamps(...) upstream, or use processing-time windows")
        return tss

    async def _send(self, out: list[Any], out_ts: list[int], dead: list[DeadLetter] | None,
                    late: list[tuple[Any, int]] | None = None) -> None:
        """What a batch or a firing produced: dead letters, late records, results."""
        if dead:
            await self.emit_dead_letters(dead)
        if late:
            await self._emit_late(late)
        if out:
            await self.output.push(Batch(out, None, out_ts))

    async def _emit_late(self, late: list[tuple[Any, int]]) -> None:
        target = None if self.late_tag is None else self.side_outputs.get(self.late_tag)
        if target is None:
            self.dropped_late += len(late)
            return
        await target.push(Batch([v for v, _ in late], None, [t for _, t in late]))

    def _process_one(self, key: Any, value: Any, ts: int, at: int, out: list[Any],
                     out_ts: list[int]) -> bool:
        """Add one record; False when every window it belongs to was skipped as late.

        A record the function fails on is in none of its windows: the windows it
        was already added to get their contents back, and what they emitted for
        it is taken back too. Session windows it bridges merge only once its own
        function has run on the merged contents; a later failure (a trigger or
        a window function firing at once) leaves them merged, without the record.
        """
        windows = self.assigner.assign(value, at)
        contents = self.contents.get(key)
        if contents is None:
            contents = {}
        tctx = self._tctx
        tctx.key = key
        prepared = _ABSENT  # a session's new contents, computed before it merges
        prepared_length = -1  # the length of its list, if an add appended in place
        if self.assigner.is_merging:
            window, parts = _merge_plan(windows[0], contents)
            if self._is_late(window):
                return False  # then it touches nothing: live windows are never late
            prepared, prepared_length = self._merge_and_add(
                key, window, parts, contents, value, ts)
            windows = [window]
        added = False
        undo: list[tuple[Any, Any, int]] = []
        emitted = len(out)
        try:
            for window in windows:
                if self._is_late(window):
                    continue
                added = True
                before = contents.get(window, _ABSENT)
                if prepared is _ABSENT:
                    undo.append((window, before, len(before) if type(before) is list else -1))
                    contents[window] = self._add(before, value, ts)
                else:
                    undo.append((window, before, prepared_length))
                    contents[window] = prepared
                tctx.window = window
                result = self.trigger.on_element(value, ts, window, tctx)
                self._apply(result, key, window, contents, out, out_ts)
                self._register_cleanup(key, window)
        except Exception:
            for window, before, length in reversed(undo):
                if before is _ABSENT:
                    contents.pop(window, None)
                else:
                    if length >= 0:
                        del before[length:]
                    contents[window] = before
            del out[emitted:]
            del out_ts[emitted:]
            self._store(key, contents)  # a merge stands
            raise
        self._store(key, contents)
        return added

    def _store(self, key: Any, contents: dict[Any, Any]) -> None:
        if contents:
            self.contents[key] = contents
        else:
            self.contents.pop(key, None)

    def _register_cleanup(self, key: Any, window: Any) -> None:
        cleanup = self._cleanup_time(window)
        if cleanup != MAX_TIMESTAMP:
            if self.assigner.is_event_time:
                self.event_timers.register((key, window), cleanup)
            elif self.processing_timers.register((key, window), cleanup):
                self.processing_timer_added(cleanup)

    def _merge_and_add(self, key: Any, window: TimeWindow, parts: list[TimeWindow],
                       contents: dict[Any, Any], value: Any, ts: int) -> tuple[Any, int]:
        """Merge ``parts`` into the session ``window`` once the record's function
        has run on the merged contents: if it fails, nothing has changed. Returns
        the contents with the record (``_ABSENT`` for records kept as a list,
        which the caller appends), and the list's length before an in-place add."""
        merged = contents.get(window, _ABSENT)
        if parts:
            merged = _ABSENT
            for part in parts:
                merged = self._merge_contents(merged, contents[part])
        prepared, length = _ABSENT, -1
        if not self.keeps_elements:  # (appending a record cannot fail)
            length = len(merged) if type(merged) is list else -1
            prepared = self._add(merged, value, ts)
        if parts:
            self._merge(key, window, parts, merged, contents)
        return prepared, length

    def _merge(self, key: Any, merged: TimeWindow, parts: list[TimeWindow], acc: Any,
               contents: dict[Any, Any]) -> None:
        """Replace the session windows ``parts`` by ``merged``, whose contents are
        ``acc``, as Flink's merging window set does: their trigger state is
        combined, the trigger clears them and is told of the merge."""
        tctx = self._tctx
        trigger = self.trigger
        combined: dict[str, Any] = {}
        for w in parts:
            del contents[w]
            for name, value in (self.trigger_state.get((key, w)) or {}).items():
                combined[name] = (trigger.merge_state(name, combined[name], value)
                                  if name in combined else value)
            tctx.window = w
            trigger.clear(w, tctx)  # with its own state still there, to find its timers
            self.trigger_state.pop((key, w), None)
            self.event_timers.delete((key, w), self._cleanup_time(w))
            self.processing_timers.delete((key, w), self._cleanup_time(w))
        contents[merged] = PURGED if acc is _ABSENT else acc
        if combined:
            self.trigger_state[(key, merged)] = combined
        tctx.window = merged
        self.trigger.on_merge(merged, tctx)

    def _apply(self, result: TriggerResult, key: Any, window: Any, contents: dict[Any, Any],
               out: list[Any], out_ts: list[int]) -> None:
        if result.fires:
            acc = contents.get(window, _ABSENT)
            if acc is not _ABSENT and acc is not PURGED:
                self._emit(key, window, acc, out, out_ts)
        if result.purges:
            if self.assigner.is_merging:
                contents[window] = PURGED
            else:
                contents.pop(window, None)

    def _emit(self, key: Any, window: Any, acc: Any, out: list[Any], out_ts: list[int]) -> None:
        before = len(out)
        if self.keeps_elements:
            elements = acc
            if self.evictor is not None:
                elements = self.evictor.evict_before(list(elements), window)
            values = [v for v, _ in elements]
            if self.kind == PROCESS:
                add_outputs(out, self.function(key, window, values))
            elif values:
                self._finish(key, window, self._fold(values), out)
            if self.evictor is not None:
                kept = self.evictor.evict_after(list(elements), window)
                acc[:] = kept
        else:
            self._finish(key, window, acc, out)
        out_ts.extend([window.max_timestamp] * (len(out) - before))

    def _fold(self, values: list[Any]) -> Any:
        if self.kind == REDUCE:
            result = _ABSENT
            for value in values:
                result = value if result is _ABSENT else self.function(result, value)
            return result
        agg: AggregateFunction[Any] = self.function
        acc = agg.create_accumulator()
        for value in values:
            acc = agg.add(value, acc)
        return acc

    def _finish(self, key: Any, window: Any, acc: Any, out: list[Any]) -> None:
        value = acc if self.kind == REDUCE else self.function.get_result(acc)
        if self.window_function is None:
            out.append(WindowResult(key, window, value))
        else:
            add_outputs(out, self.window_function(key, window, value))

    # -- timers -------------------------------------------------------------------------

    async def on_watermark(self, timestamp: int) -> None:
        if timestamp <= self.watermark:
            return
        self.watermark = timestamp
        await self._fire(self.event_timers, timestamp, event_time=True)
        await Operator.on_watermark(self, timestamp)

    async def _fire(self, queue: TimerQueue, until: int, *, event_time: bool) -> None:
        out: list[Any] = []
        out_ts: list[int] = []
        tctx = self._tctx
        heap = queue.heap
        buckets = queue.buckets
        dead: list[DeadLetter] = []
        while heap and heap[0] <= until:
            time = heap[0]
            bucket = buckets.get(time)
            if not bucket:
                heapq.heappop(heap)
                buckets.pop(time, None)
                continue
            for slot in list(bucket):
                if bucket.pop(slot, _ABSENT) is _ABSENT:
                    continue  # deleted by an earlier firing
                self._fire_one(slot, time, event_time, tctx, out, out_ts, dead)
                if heap[0] < time:
                    break  # a trigger set an earlier timer: it goes first
        await self._send(out, out_ts, dead)

    def _fire_one(self, slot: tuple[Any, Any], time: int, event_time: bool,
                  tctx: _TriggerContext, out: list[Any], out_ts: list[int],
                  dead: list[DeadLetter]) -> None:
        key, window = slot
        contents = self.contents.get(key)
        if contents is None:
            contents = {}
        if self.assigner.is_merging and window not in contents:
            return  # merged into another window, which has timers of its own
        tctx.key = key
        tctx.window = window
        emitted = len(out)
        try:
            if event_time:
                result = self.trigger.on_event_time(time, window, tctx)
            else:
                result = self.trigger.on_processing_time(time, window, tctx)
            self._apply(result, key, window, contents, out, out_ts)
        except Exception as exc:
            del out[emitted:]
            del out_ts[emitted:]
            self._firing_failed(key, window, contents.get(window), time, exc, dead)
        if event_time == self.assigner.is_event_time and time == self._cleanup_time(window):
            contents.pop(window, None)
            self.trigger.clear(window, tctx)
            self.trigger_state.pop((key, window), None)
        self._store(key, contents)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> KeyedRows:
        """Rows: each key's windows and contents (a state table, so only the changed
        keys when the backend tracks changes), trigger state, and timers with
        their firing positions; the watermark and counter as meta."""
        rows, base = self.table_rows(self.backend, checkpoint_id)
        rows.extend((key, "trigger", window, state)
                    for (key, window), state in self.trigger_state.items())
        for domain, queue in (("event", self.event_timers),
                              ("processing", self.processing_timers)):
            rows.extend((slot[0], domain, slot[1], ts, position)
                        for position, (slot, ts) in enumerate(queue.items()))
        return keyed_rows((self.watermark, self.dropped_late), rows, base)

    def restored(self, checkpoint_id: int, increments: int) -> None:
        self.tables_restored(self.backend, checkpoint_id, increments)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.tables_checkpointed(checkpoint_id)

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        self.watermark, self.dropped_late = loads(state.meta)
        timers: dict[str, list[tuple[int, Any, int]]] = {"event": [], "processing": []}
        assert self.backend is not None
        for row in rows_of(state):
            key, kind = row[0], row[1]
            if kind == TABLE_ROW:
                self.backend.table(row[2])[key] = row[3]
            elif kind == "trigger":
                self.trigger_state[(key, row[2])] = row[3]
            else:
                timers[kind].append((row[4], (key, row[2]), row[3]))
        self.event_timers.restore(timers["event"])
        self.processing_timers.restore(timers["processing"])
        earliest = self.processing_timers.peek()
        if earliest is not None:
            self.processing_timer_added(earliest)

    def _firing_failed(self, key: Any, window: Any, contents: Any, time: int,
                       exc: Exception, dead: list[DeadLetter]) -> None:
        """A window function failed as its window fired: there is no record to
        blame, so the window itself (key, window, contents) is the dead letter."""
        if self.on_error != "dead_letter":
            firing = f"window {window!r} firing at {time} with contents {contents!r}"
            raise UserFunctionError(self.name, firing, exc, key, True) from exc
        dead.append(DeadLetter(self.name, WindowResult(key, window, contents), exc, key, time))

    async def fire_processing_timers(self, now: int) -> None:
        await self._fire(self.processing_timers, now, event_time=False)


class TumblingOperator(WindowOperator):
    """The common case, specialised: event-time tumbling windows with the
    default trigger, no evictor, an incremental reduce or aggregate, and
    state in memory.

    It computes exactly what ``WindowOperator`` computes, in the same order
    (the property tests hold both to one oracle), from a layout made for the
    case: one dict per window, ``window max timestamp -> {key: accumulator}``.
    That dict is also the window's timer bucket: its keys are in the order of
    their first record, which is the order the default trigger registers and
    fires their timers; a heap holds the max timestamps still to fire, a
    second one (with allowed lateness) those fired but not yet cleaned up.
    A record costs a few dict operations and the user's function; a firing
    instant pops one dict and, when nothing user-written runs as it fires,
    builds all its results in C.
    """

    def open(self, ctx: OperatorContext) -> None:
        self.timer_context = ctx
        self.clock = ctx.clock
        assigner = self.assigner
        assert isinstance(assigner, Tumbling)
        self.size = assigner.size
        self.offset = assigner.offset
        self.windows: dict[int, dict[Any, Any]] = {}
        self.due: list[int] = []  # max timestamps of windows still to fire
        self.fired: list[int] = []  # of fired windows kept for the allowed lateness
        self.get_result = None if self.kind == REDUCE or (
            type(self.function).get_result is AggregateFunction.get_result
        ) else self.function.get_result
        self.initial = _FRESH if self.kind == REDUCE else shared_initial(self.function)

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> KeyedRows:
        """Rows ``(key, window max timestamp, position, accumulator)`` by key group;
        the windows, the heaps, the watermark and the counter as meta."""
        rows = [(key, t, position, acc) for t, accs in self.windows.items()
                for position, (key, acc) in enumerate(accs.items())]
        meta = (self.watermark, self.dropped_late, list(self.windows), self.due, self.fired)
        return keyed_rows(meta, rows)

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        self.watermark, self.dropped_late, times, self.due, self.fired = loads(state.meta)
        windows = self.windows = {t: {} for t in times}
        for key, t, _, acc in sorted(rows_of(state), key=itemgetter(1, 2)):
            windows[t][key] = acc

    async def process(self, batch: Batch) -> None:  # one hot loop, on purpose
        keys = batch.keys
        tss = self._event_times(batch)
        assert keys is not None, "window runs behind key_by"
        values = batch.values
        size = self.size
        offset = self.offset
        last = size - 1
        watermark = self.watermark
        reduce = self.kind == REDUCE
        fn = self.function if reduce else self.function.add
        create = None if reduce else self.function.create_accumulator
        initial = self.initial
        fresh = _FRESH
        out: list[Any] = []
        out_ts: list[int] = []
        late: list[tuple[Any, int]] = []
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        remaining = iter(values)
        left = remaining.__length_hint__  # type: ignore[attr-defined]  # list iterators have it
        records = zip(keys, remaining, tss, strict=True)
        # one loop for reduce and one for aggregate, so that neither tests which it is
        # per record; a batch's records mostly share a window, so the last window's
        # dict is kept at hand; a record of a window that has fired goes to _late_record
        current = None  # the number of the window ``accs`` holds: (ts - offset) // size
        accs: dict[Any, Any] = {}
        while True:
            try:
                if reduce:
                    for key, value, ts in records:
                        n = (ts - offset) // size  # the window's number
                        if n != current:
                            t = n * size + offset + last  # its max timestamp
                            if t <= watermark:
                                self._late_record(key, value, ts, t, out, out_ts, late)
                                continue
                            accs = self._window(t)
                            current = n
                        acc = accs.get(key, fresh)
                        accs[key] = value if acc is fresh else fn(acc, value)
                else:
                    for key, value, ts in records:
                        n = (ts - offset) // size
                        if n != current:
                            t = n * size + offset + last
                            if t <= watermark:
                                self._late_record(key, value, ts, t, out, out_ts, late)
                                continue
                            accs = self._window(t)
                            current = n
                        acc = accs.get(key, initial)
                        accs[key] = fn(value, create() if acc is fresh else acc)  # type: ignore[misc]
                break
            except Exception as exc:
                self.failed(batch, len(values) - left() - 1, exc, dead)
        await self._send(out, out_ts, dead, late)

    def _window(self, t: int) -> dict[Any, Any]:
        """The accumulators of the window whose max timestamp is ``t``, made on first use."""
        accs = self.windows.get(t)
        if accs is None:
            accs = self.windows[t] = {}
            heapq.heappush(self.due, t)
        return accs

    def _late_record(self, key: Any, value: Any, ts: int, t: int, out: list[Any],
                     out_ts: list[int], late: list[tuple[Any, int]]) -> None:
        """A record for a window the watermark has passed: within the allowed
        lateness it is added and the window fires again at once, as the default
        trigger fires; beyond it, it is late data."""
        lateness = self.lateness_ms
        if t + lateness <= self.watermark:
            late.append((value, ts))
            return
        accs = self.windows.get(t)
        if accs is None:
            accs = self.windows[t] = {}
            heapq.heappush(self.fired, t)
        before = accs.get(key, _ABSENT)
        length = len(before) if type(before) is list else -1
        if self.kind == REDUCE:
            acc = value if before is _ABSENT else self.function(before, value)
        else:
            acc = self.function.add(value, self.function.create_accumulator()
                                    if before is _ABSENT else before)
        emitted = len(out)
        try:
            self._finish(key, TimeWindow(t - self.size + 1, t + 1), acc, out)
        except Exception:
            del out[emitted:]  # the record is in none of its windows
            if length >= 0:
                del before[length:]  # (an add that appended in place)
            raise
        out_ts.extend([t] * (len(out) - emitted))
        accs[key] = acc

    async def on_watermark(self, timestamp: int) -> None:
        if timestamp <= self.watermark:
            return
        self.watermark = timestamp
        due = self.due
        windows = self.windows
        lateness = self.lateness_ms
        fired = self.fired
        pop = heapq.heappop
        # nothing user-written runs as windows fire: no firing can fail half-way
        plain = self.window_function is None and self.get_result is None
        dead: list[DeadLetter] = []
        out: list[Any] = []
        out_ts: list[int] = []
        while due and due[0] <= timestamp:
            t = pop(due)
            accs = windows[t] if lateness else windows.pop(t)
            window = TimeWindow(t - self.size + 1, t + 1)
            if plain:
                out.extend(map(_make_result, repeat(WindowResult),
                               zip(accs, repeat(window), accs.values())))
            else:
                self._fire_each(accs, window, t, out, dead)
            out_ts.extend(repeat(t, len(out) - len(out_ts)))
            if lateness:
                heapq.heappush(fired, t)
        while fired and fired[0] + lateness <= timestamp:
            windows.pop(pop(fired), None)
        await self._send(out, out_ts, dead)
        await Operator.on_watermark(self, timestamp)

    def _fire_each(self, accs: dict[Any, Any], window: TimeWindow, t: int, out: list[Any],
                   dead: list[DeadLetter]) -> None:
        """Fire a window's keys one by one: a failing ``get_result`` or window
        function makes that one window a dead letter (or fails the job)."""
        for key, acc in accs.items():
            emitted = len(out)
            try:
                self._finish(key, window, acc, out)
            except Exception as exc:
                del out[emitted:]
                self._firing_failed(key, window, acc, t, exc, dead)


class SessionOperator(WindowOperator):
    """Event-time session windows with a static gap, the default trigger, no
    evictor and an incremental reduce or aggregate: the general operator's
    steps for each record, in the same order, with the trigger, timer and
    lateness calls written out inline. Firing is the general operator's."""

    async def process(self, batch: Batch) -> None:  # noqa: PLR0915  # one hot loop
        keys = batch.keys
        tss = self._event_times(batch)
        assert keys is not None, "window runs behind key_by"
        assigner = self.assigner
        assert isinstance(assigner, Session)
        gap = assigner.gap
        contents_of = self.contents
        lateness = self.lateness_ms
        watermark = self.watermark
        reduce = self.kind == REDUCE
        function = self.function
        add = function if reduce else function.add
        merge = function if reduce else function.merge
        create = None if reduce else function.create_accumulator
        initial = _FRESH if reduce else shared_initial(function)
        buckets = self.event_timers.buckets
        heap = self.event_timers.heap
        new = tuple.__new__

        def register(time: int, slot: tuple[Any, Any]) -> None:
            bucket = buckets.get(time)
            if bucket is None:
                buckets[time] = {slot: None}
                heapq.heappush(heap, time)
            elif slot not in bucket:
                bucket[slot] = None

        out: list[Any] = []
        out_ts: list[int] = []
        late: list[tuple[Any, int]] = []
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        for i, value in enumerate(batch.values):
            key = keys[i]
            ts = tss[i]
            end = ts + gap
            windows = contents_of.get(key)
            if windows is None:
                windows = {}
            # the session the record's [ts, ts + gap) ends up in, and what merges into it
            parts: list[Any] | None = None
            window = None
            for w in windows:
                if w[0] <= end and w[1] >= ts:  # overlapping or touching
                    if window is None:
                        window = w
                    else:
                        parts = [window, w] if parts is None else [*parts, w]
            try:
                if window is None:
                    window = new(TimeWindow, (ts, end))
                elif parts is not None:
                    parts.sort()
                    window = new(TimeWindow, (min(ts, parts[0][0]),
                                              max(end, *[w[1] for w in parts])))
                elif window[0] > ts or window[1] < end:  # the record grows the session
                    parts = [window]
                    window = new(TimeWindow, (min(ts, window[0]), max(end, window[1])))
                max_ts = window[1] - 1
                if max_ts + lateness <= watermark:  # (then it touched no live session)
                    if ts + lateness <= watermark:
                        late.append((value, ts))
                    continue
                if parts is None:
                    acc = windows.get(window, _ABSENT)
                else:
                    acc = _ABSENT
                    for old in parts:
                        part = windows[old]
                        if part is not PURGED:
                            acc = part if acc is _ABSENT else merge(acc, part)
                # the record's own function, before anything changes: if it fails,
                # no session has merged
                length = -1
                if acc is _ABSENT or acc is PURGED:
                    grown = value if reduce else add(
                        value, create() if initial is _FRESH else initial)  # type: ignore[misc]
                else:
                    length = len(acc) if type(acc) is list else -1
                    grown = add(acc, value) if reduce else add(value, acc)
                slot = (key, window)
                if parts is not None:  # merge: the trigger's clear() and on_merge()
                    for old in parts:
                        del windows[old]
                        old_slot = (key, old)
                        for time in (old[1] - 1, old[1] - 1 + lateness) if lateness else (
                                old[1] - 1,):
                            bucket = buckets.get(time)
                            if bucket is not None:
                                bucket.pop(old_slot, None)
                    windows[window] = PURGED if acc is _ABSENT else acc
                    contents_of[key] = windows
                    if max_ts > watermark:
                        register(max_ts, slot)
                if max_ts <= watermark:  # a late record within the lateness: fire now
                    emitted = len(out)
                    try:
                        self._finish(key, window, grown, out)
                    except Exception:
                        del out[emitted:]  # the record is in none of its windows
                        if length >= 0:
                            del acc[length:]  # (an add that appended in place)
                        raise
                    out_ts.extend([max_ts] * (len(out) - emitted))
                windows[window] = grown
                # a window that was there has its timers; a new one gets them, as the
                # default trigger's on_element and the cleanup would register them
                if acc is _ABSENT and parts is None:
                    if max_ts > watermark:
                        register(max_ts, slot)
                    if lateness:
                        register(max_ts + lateness, slot)
                elif parts is not None and lateness:
                    register(max_ts + lateness, slot)
                contents_of[key] = windows
            except Exception as exc:
                self.failed(batch, i, exc, dead)
        await self._send(out, out_ts, dead, late)

    async def on_watermark(self, timestamp: int) -> None:
        """The general operator's firing with the default trigger written out: a
        session fires at its max timestamp and goes at its cleanup time."""
        if timestamp <= self.watermark:
            return
        self.watermark = timestamp
        heap = self.event_timers.heap
        buckets = self.event_timers.buckets
        contents_of = self.contents
        lateness = self.lateness_ms
        plain = self.window_function is None and (self.kind == REDUCE or (
            type(self.function).get_result is AggregateFunction.get_result))
        new = tuple.__new__
        out: list[Any] = []
        out_ts: list[int] = []
        dead: list[DeadLetter] = []
        while heap and heap[0] <= timestamp:
            time = heapq.heappop(heap)
            slots = buckets.pop(time, None)
            if not slots:
                continue
            for key, window in slots:
                windows = contents_of.get(key)
                acc = _ABSENT if windows is None else windows.get(window, _ABSENT)
                if acc is _ABSENT:
                    continue  # merged into another session, which has timers of its own
                max_ts = window[1] - 1
                if time == max_ts and acc is not PURGED:
                    if plain:
                        out.append(new(WindowResult, (key, window, acc)))
                        out_ts.append(time)
                    else:
                        emitted = len(out)
                        try:
                            self._finish(key, window, acc, out)
                        except Exception as exc:
                            del out[emitted:]
                            self._firing_failed(key, window, acc, time, exc, dead)
                        out_ts.extend([time] * (len(out) - emitted))
                if time == max_ts + lateness:
                    del windows[window]  # type: ignore[union-attr]
                    if not windows:
                        del contents_of[key]
        await self._send(out, out_ts, dead)
        await Operator.on_watermark(self, timestamp)
