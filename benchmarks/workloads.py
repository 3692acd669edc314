"""The benchmark workloads, each written three ways over the same events.

* ``plain``: the tightest honest plain-Python loop doing the same work, with
  the user logic inlined (no function call per record). It builds every value
  the pipeline's sink sees (W1: the mapped tuple; W1k: the reduced tuple) and
  nothing else. This is the baseline the engine is measured against.
* ``batched``: the very same user functions the pipeline gets, called through
  ``map()``/``filter()`` over ``batch_size``-record slices with no engine at
  all. It is the ceiling a batched engine can reach with these functions, so
  ``streamlet / batched`` is what the engine itself costs.
* ``streamlet``: the pipeline, built and run afresh on every call.

Every runner returns the workload's result so that the benchmark runner can
check that all three computed the same thing.

The W2p workloads (event time, keyed state, timers) read the copy of the
events that ``displace_events`` makes, with 5% of them moved back in time. Their ``batched``
side calls the same process function through a minimal stand-in for the
operator: a context, a state handle over a dict and a dict of timers, fed
batch by batch, with a watermark after each batch as the engine makes them.

W2 (tumbling windows, on W2p's events) and W3 (session windows, on events of
its own from ``session_events``) emit ``WindowResult``s; their plain loops
build ``(key, (start, end), value)`` tuples instead, and ``window_rows``
puts both in one form after the timing (``Workload.canonical``).
"""

from __future__ import annotations

import heapq
import random
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlet as sl

Event = dict[str, int]
Pair = tuple[int, int]

USERS = 10_000
SEED = 42
FIRST_TS = 1_700_000_000_000


def generate_events(n: int, seed: int = SEED) -> list[Event]:
    """``n`` events ``{"user": 0..9999, "ts": ms, "amount": 0..999}``.

    Seeded, so every run sees the same events; ``ts`` increases by 1 ms per event.
    """
    rng = random.Random(seed)
    randrange = rng.randrange
    return [{"user": randrange(USERS), "ts": FIRST_TS + i, "amount": randrange(1000)}
            for i in range(n)]


_MISSING: Any = object()
_drain: Callable[[Any], None] = deque(maxlen=0).extend


# -- W1: stateless filter -> map -> sink (sum and count) ------------------------------

def w1_filter(e: Event) -> bool:
    return e["amount"] % 3 != 0


def w1_map(e: Event) -> Pair:
    return (e["user"], e["amount"] * 2)


def sum_count_sink() -> tuple[Callable[[Pair], None], Callable[[], Pair]]:
    """The W1 sink (sum of the doubled amounts, number of records) and its result."""
    total = 0
    count = 0

    def sink(p: Pair) -> None:
        nonlocal total, count
        total += p[1]
        count += 1

    def result() -> Pair:
        return (total, count)
    return sink, result


def w1_plain(events: list[Event], batch_size: int) -> Pair:
    total = 0
    count = 0
    for e in events:
        a = e["amount"]
        if a % 3:
            p = (e["user"], a * 2)
            total += p[1]
            count += 1
    return (total, count)


def w1_batched(events: list[Event], batch_size: int) -> Pair:
    keep = w1_filter
    fn = w1_map
    sink, result = sum_count_sink()
    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        kept = list(filter(keep, chunk))
        mapped = list(map(fn, kept))
        _drain(map(sink, mapped))
    return result()


def w1_streamlet(events: list[Event], batch_size: int) -> Pair:
    sink, result = sum_count_sink()
    p = sl.Pipeline("w1", batch_size=batch_size)
    p.from_iterable(events).filter(w1_filter).map(w1_map).sink(sink)
    p.run()
    return result()


# -- W1k: keyed running reduce, sink keeps the last value per key ---------------------

def w1k_map(e: Event) -> Pair:
    return (e["user"], e["amount"])


def w1k_key(p: Pair) -> int:
    return p[0]


def w1k_reduce(a: Pair, b: Pair) -> Pair:
    return (a[0], a[1] + b[1])


def last_per_key_sink() -> tuple[Callable[[Pair], None], dict[int, Pair]]:
    """The W1k sink, which keeps the last value of every key, and its dict."""
    last: dict[int, Pair] = {}
    setitem = last.__setitem__

    def sink(p: Pair) -> None:
        setitem(p[0], p)
    return sink, last


def w1k_plain(events: list[Event], batch_size: int) -> dict[int, Pair]:
    state: dict[int, Pair] = {}
    last: dict[int, Pair] = {}
    get = state.get
    for e in events:
        u = e["user"]
        acc = get(u)
        p = (u, e["amount"]) if acc is None else (acc[0], acc[1] + e["amount"])
        state[u] = p
        last[u] = p
    return last


def w1k_batched(events: list[Event], batch_size: int) -> dict[int, Pair]:
    fn = w1k_map
    key_fn = w1k_key
    reduce_fn = w1k_reduce
    state: dict[int, Pair] = {}
    get = state.get
    sink, last = last_per_key_sink()
    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        values = list(map(fn, chunk))
        keys = list(map(key_fn, values))
        out: list[Pair] = []
        append = out.append
        for key, value in zip(keys, values, strict=True):
            acc = get(key, _MISSING)
            acc = value if acc is _MISSING else reduce_fn(acc, value)
            state[key] = acc
            append(acc)
        _drain(map(sink, out))
    return last


def w1k_streamlet(events: list[Event], batch_size: int) -> dict[int, Pair]:
    sink, last = last_per_key_sink()
    p = sl.Pipeline("w1k", batch_size=batch_size)
    p.from_iterable(events).map(w1k_map).key_by(w1k_key).reduce(w1k_reduce).sink(sink)
    p.run()
    return last


# -- W2p: keyed process function with event-time timers --------------------------------
#
# Per user, count the records of each second of event time and emit
# ``(user, second, count)`` when the watermark passes the end of the second.
# The events arrive out of order (``displace_events``), timestamps come from
# ``ts`` and watermarks trail the highest timestamp by 2 s.

OUT_OF_ORDERNESS_MS = 2_000
MAX_DISPLACEMENT_MS = 2_000
DISPLACED_ONE_IN = 20  # 5% of the records arrive out of order
MIN_TS = -(2**63)
MAX_TS = 2**63 - 1
W2P_STRATEGY = sl.WatermarkStrategy.bounded_out_of_orderness(OUT_OF_ORDERNESS_MS)

Row = tuple[int, int, int]  # (user, second, count)


def displace_events(events: list[Event], seed: int = SEED) -> list[Event]:
    """``events`` in the same (arrival) order, but with ``len // 20`` of them,
    drawn with ``random.Random(seed)``, moved back in time by 1..2000 ms.

    The moved records are new dicts; the others are shared with ``events``.
    """
    rng = random.Random(seed)
    moved = list(events)
    for i in sorted(rng.sample(range(len(moved)), len(moved) // DISPLACED_ONE_IN)):
        e = moved[i]
        moved[i] = {"user": e["user"], "ts": e["ts"] - rng.randint(1, MAX_DISPLACEMENT_MS),
                    "amount": e["amount"]}
    return moved


def w2p_timestamp(e: Event) -> int:
    return e["ts"]


def w2p_user(e: Event) -> int:
    return e["user"]


class CountPerSecond(sl.KeyedProcessFunction):
    """W2p: one running count per user, emitted and cleared by a timer at the
    end of each second the user had records in.

    The count is per user, not per second: records of a later second that
    arrive before an earlier second's timer fires are counted into it, and the
    later timer then finds nothing left and emits nothing.
    """

    count = sl.ValueState("count", default=0)

    def process(self, value: Event, ctx: Any) -> None:
        count = self.count
        count.update(count.value() + 1)
        ctx.timers.register_event_time(ctx.timestamp // 1000 * 1000 + 999)

    def on_timer(self, timestamp: int, ctx: Any) -> Row | None:
        count = self.count
        n = count.value()
        if not n:
            return None
        count.clear()
        return (ctx.key, timestamp // 1000, n)


class CountPerSecondMap(sl.KeyedProcessFunction):
    """W2p-map: a count per (user, second) in a ``MapState`` keyed by second,
    emitted and removed by that second's timer: the per-second counts exactly."""

    counts = sl.MapState("counts")

    def process(self, value: Event, ctx: Any) -> None:
        counts = self.counts
        second = ctx.timestamp // 1000
        counts.put(second, counts.get(second, 0) + 1)
        ctx.timers.register_event_time(second * 1000 + 999)

    def on_timer(self, timestamp: int, ctx: Any) -> Row:
        counts = self.counts
        second = timestamp // 1000
        n: int = counts.get(second)
        counts.remove(second)
        return (ctx.key, second, n)


def w2p_plain(events: list[Event], batch_size: int) -> list[Row]:
    """What the engine computes, written as one loop.

    It follows the engine's documented event time exactly: after each source
    batch of ``batch_size`` records the watermark is the highest timestamp
    seen - 2000 - 1 (when that is higher than before), and the timers at or
    before it fire in timestamp order, then in registration order, before
    the next batch; the end of the input fires the rest. ``timers`` maps a
    timer's time to its users, in registration order (a dict, so a second
    registration of the same (user, time) is a no-op, as in the engine).
    """
    counts: dict[int, int] = {}
    timers: dict[int, dict[int, None]] = {}
    out: list[Row] = []
    append = out.append
    get = counts.get
    pop = counts.pop
    pending = timers.get
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1

    def fire(until: int) -> None:
        for t in sorted([t for t in timers if t <= until]):
            second = t // 1000
            for u in timers.pop(t):
                c = pop(u, 0)
                if c:
                    append((u, second, c))

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            counts[u] = get(u, 0) + 1
            t = ts // 1000 * 1000 + 999
            users = pending(t)
            if users is None:
                timers[t] = {u: None}
            else:
                users[u] = None
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)  # the end of the input
    return out


def w2p_map_plain(events: list[Event], batch_size: int) -> list[Row]:
    """The natural per-(user, second) count, emitted when the watermark (as in
    ``w2p_plain``) passes the end of the second, in the engine's order."""
    per_second: dict[int, dict[int, int]] = {}  # end of second -> user -> count
    out: list[Row] = []
    append = out.append
    pending = per_second.get
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1

    def fire(until: int) -> None:
        for t in sorted([t for t in per_second if t <= until]):
            second = t // 1000
            for u, c in per_second.pop(t).items():
                append((u, second, c))

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            t = ts // 1000 * 1000 + 999
            counts = pending(t)
            if counts is None:
                per_second[t] = {u: 1}
            else:
                counts[u] = counts.get(u, 0) + 1
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


class _Ctx:
    """The least a process function needs: ``key``, ``timestamp``, ``timers``."""

    __slots__ = ("key", "timers", "timestamp")

    def __init__(self) -> None:
        self.key: Any = None
        self.timestamp = 0
        self.timers = _Timers(self)


class _Timers:
    __slots__ = ("_ctx", "pending")

    def __init__(self, ctx: _Ctx) -> None:
        self._ctx = ctx
        self.pending: dict[int, dict[Any, None]] = {}  # time -> keys, in registration order

    def register_event_time(self, timestamp: int) -> None:
        keys = self.pending.get(timestamp)
        if keys is None:
            self.pending[timestamp] = {self._ctx.key: None}
        else:
            keys[self._ctx.key] = None


class _Value:
    __slots__ = ("_ctx", "_default", "_table")

    def __init__(self, ctx: _Ctx, default: Any) -> None:
        self._ctx = ctx
        self._default = default
        self._table: dict[Any, Any] = {}

    def value(self) -> Any:
        return self._table.get(self._ctx.key, self._default)

    def update(self, value: Any) -> None:
        self._table[self._ctx.key] = value

    def clear(self) -> None:
        self._table.pop(self._ctx.key, None)


class _Map:
    __slots__ = ("_ctx", "_table")

    def __init__(self, ctx: _Ctx) -> None:
        self._ctx = ctx
        self._table: dict[Any, dict[Any, Any]] = {}

    def get(self, user_key: Any, default: Any = None) -> Any:
        entries = self._table.get(self._ctx.key)
        return default if entries is None else entries.get(user_key, default)

    def put(self, user_key: Any, value: Any) -> None:
        entries = self._table.get(self._ctx.key)
        if entries is None:
            self._table[self._ctx.key] = {user_key: value}
        else:
            entries[user_key] = value

    def remove(self, user_key: Any) -> None:
        key = self._ctx.key
        entries = self._table.get(key)
        if entries is not None:
            entries.pop(user_key, None)
            if not entries:
                del self._table[key]


def _run_process(function: Any, ctx: _Ctx, events: list[Event], batch_size: int) -> list[Row]:
    """Feed ``function`` batch by batch as the engine does, with no engine."""
    out: list[Row] = []
    append = out.append
    process = function.process
    on_timer = function.on_timer
    pending = ctx.timers.pending
    extract = w2p_timestamp
    key_fn = w2p_user
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1

    def fire(until: int) -> None:
        for t in sorted([t for t in pending if t <= until]):
            ctx.timestamp = t
            for key in pending.pop(t):
                ctx.key = key
                result = on_timer(t, ctx)
                if result is not None:
                    append(result)

    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        stamps = list(map(extract, chunk))
        keys = list(map(key_fn, chunk))
        for key, value, ts in zip(keys, chunk, stamps, strict=True):
            ctx.key = key
            ctx.timestamp = ts
            result = process(value, ctx)
            if result is not None:
                append(result)
        highest = max(highest, *stamps)
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w2p_batched(events: list[Event], batch_size: int) -> list[Row]:
    function = CountPerSecond()
    ctx = _Ctx()
    vars(function)["count"] = _Value(ctx, 0)
    return _run_process(function, ctx, events, batch_size)


def w2p_map_batched(events: list[Event], batch_size: int) -> list[Row]:
    function = CountPerSecondMap()
    ctx = _Ctx()
    vars(function)["counts"] = _Map(ctx)
    return _run_process(function, ctx, events, batch_size)


def _w2p_pipeline(events: list[Event], batch_size: int, function: sl.KeyedProcessFunction,
                  state_backend: Any = None) -> list[Row]:
    out: list[Row] = []
    p = sl.Pipeline("w2p", batch_size=batch_size, state_backend=state_backend)
    (p.from_iterable(events)
     .assign_timestamps(w2p_timestamp, W2P_STRATEGY)
     .key_by(w2p_user)
     .process(function)
     .sink(out.append))
    p.run()
    return out


def w2p_streamlet(events: list[Event], batch_size: int) -> list[Row]:
    return _w2p_pipeline(events, batch_size, CountPerSecond())


def w2p_map_streamlet(events: list[Event], batch_size: int) -> list[Row]:
    return _w2p_pipeline(events, batch_size, CountPerSecondMap())


def w2p_sqlite_streamlet(events: list[Event], batch_size: int) -> list[Row]:
    """W2p with its state in SQLite files in a fresh directory (removed after)."""
    # imported here so that the other workloads run without the SQLite backend
    from streamlet.state.sqlite import SQLiteState  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="w2p-") as directory:
        return _w2p_pipeline(events, batch_size, CountPerSecond(), SQLiteState(directory))


# -- W2: per user, tumbling 1-second event-time windows, count and sum(amount) ---------
#
# The events of W2p (5% displaced back by up to 2 s, watermarks 2 s behind),
# keyed by user, cut into tumbling 1-second event-time windows; each window
# emits one result, ``WindowResult(user, window, (count, sum of amount))``,
# when the watermark passes its end. The plain loops build the same thing as
# tuples, ``(user, (start, end), (count, sum))``, with one ``(start, end)``
# per firing instant; ``window_rows`` puts both in one form to compare them.

W2_SIZE_MS = 1_000

Window = tuple[int, int]  # (start, end), the plain loops' window
W2Row = tuple[int, Window, Pair]  # (user, window, (count, sum)), the plain WindowResult
W2FnRow = tuple[int, int, int, int]  # (user, window start, count, sum): W2-fn's rows


class LateDataError(RuntimeError):
    """A plain loop met a record the engine would drop as late.

    The W2 and W3 events are built so that none is late (displaced by at most
    the watermark's out-of-orderness); the plain loops check every record.
    """


def window_rows(result: list[Any]) -> list[tuple[Any, ...]]:
    """``(key, start, end, *value)`` for each ``WindowResult`` or plain-loop
    ``(key, (start, end), value)``; a tuple value is spread. Not timed."""
    result_type = sl.windows.WindowResult
    rows: list[tuple[Any, ...]] = []
    for r in result:
        if isinstance(r, result_type):
            key, start, end, value = r.key, r.window.start, r.window.end, r.value
        else:
            key, (start, end), value = r
        rows.append((key, start, end, *value) if isinstance(value, tuple)
                    else (key, start, end, value))
    return rows


class CountSum(sl.AggregateFunction):
    """W2's aggregate: ``(count, sum of amount)``."""

    def create_accumulator(self) -> Pair:
        return (0, 0)

    def add(self, value: Event, accumulator: Pair) -> Pair:
        return (accumulator[0] + 1, accumulator[1] + value["amount"])

    def merge(self, a: Pair, b: Pair) -> Pair:
        return (a[0] + b[0], a[1] + b[1])


def w2_row(key: int, window: Any, acc: Pair) -> W2FnRow:
    """W2-fn's window function: a flat row instead of a ``WindowResult``."""
    return (key, window.start, acc[0], acc[1])


def w2_plain(events: list[Event], batch_size: int) -> list[W2Row]:
    """W2 as one loop: a dict of window end - 1 -> {user: (count, sum)}.

    The watermark is W2p's (after each batch, highest timestamp - 2001 when
    that is higher). Windows whose end - 1 is at or before it are emitted in
    order of their end, each window's users in the order of their first
    record, which is the order the engine registers and fires their timers.
    A record whose window has already been emitted would be late (the engine
    drops it): ``LateDataError``.
    """
    windows: dict[int, dict[int, Pair]] = {}  # window end - 1 -> user -> (count, sum)
    out: list[W2Row] = []
    append = out.append
    pending = windows.get
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    size = W2_SIZE_MS
    last = size - 1

    def fire(until: int) -> None:
        for t in sorted([t for t in windows if t <= until]):
            window = (t - last, t + 1)
            for u, acc in windows.pop(t).items():
                append((u, window, acc))

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            t = ts - ts % size + last
            if t <= watermark:
                raise LateDataError(f"W2: record {e} is late for watermark {watermark}")
            users = pending(t)
            if users is None:
                windows[t] = {u: (1, e["amount"])}
            else:
                acc = users.get(u)
                users[u] = (1, e["amount"]) if acc is None else (acc[0] + 1, acc[1] + e["amount"])
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w2_fn_plain(events: list[Event], batch_size: int) -> list[W2FnRow]:
    """``w2_plain`` emitting W2-fn's flat rows ``(user, start, count, sum)``."""
    windows: dict[int, dict[int, Pair]] = {}  # window end - 1 -> user -> (count, sum)
    out: list[W2FnRow] = []
    append = out.append
    pending = windows.get
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    size = W2_SIZE_MS
    last = size - 1

    def fire(until: int) -> None:
        for t in sorted([t for t in windows if t <= until]):
            start = t - last
            for u, acc in windows.pop(t).items():
                append((u, start, acc[0], acc[1]))

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            t = ts - ts % size + last
            if t <= watermark:
                raise LateDataError(f"W2: record {e} is late for watermark {watermark}")
            users = pending(t)
            if users is None:
                windows[t] = {u: (1, e["amount"])}
            else:
                acc = users.get(u)
                users[u] = (1, e["amount"]) if acc is None else (acc[0] + 1, acc[1] + e["amount"])
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w2_sum_plain(events: list[Event], batch_size: int) -> list[tuple[int, Window, int]]:
    """``w2_plain`` with only the sum: ``(user, (start, end), sum of amount)``."""
    windows: dict[int, dict[int, int]] = {}  # window end - 1 -> user -> sum
    out: list[tuple[int, Window, int]] = []
    append = out.append
    pending = windows.get
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    size = W2_SIZE_MS
    last = size - 1

    def fire(until: int) -> None:
        for t in sorted([t for t in windows if t <= until]):
            window = (t - last, t + 1)
            for u, total in windows.pop(t).items():
                append((u, window, total))

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            t = ts - ts % size + last
            if t <= watermark:
                raise LateDataError(f"W2: record {e} is late for watermark {watermark}")
            users = pending(t)
            if users is None:
                windows[t] = {u: e["amount"]}
            else:
                users[u] = users.get(u, 0) + e["amount"]
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def _window_result_maker() -> Callable[[Any, Any, Any], Any]:
    """The cheapest way to make a ``WindowResult``: ``tuple.__new__`` when it
    is a tuple (as the engine makes them), else its constructor."""
    result_type = sl.windows.WindowResult
    if not issubclass(result_type, tuple):
        return result_type
    new = tuple.__new__

    def make(key: Any, window: Any, value: Any) -> Any:
        return new(result_type, (key, window, value))
    return make


def _run_tumbling(agg: sl.AggregateFunction,
                  window_function: Callable[[Any, Any, Any], Any] | None,
                  events: list[Event], batch_size: int) -> list[Any]:
    """The same extractor, key function, aggregate and window function as the
    pipeline, fed batch by batch with the engine's watermarks, with no engine:
    one dict of accumulators per window, one ``TimeWindow`` per firing
    instant, a ``WindowResult`` per window unless there is a window function."""
    windows: dict[int, dict[Any, Any]] = {}  # window end - 1 -> key -> accumulator
    out: list[Any] = []
    append = out.append
    pending = windows.get
    create = agg.create_accumulator
    add = agg.add
    result = agg.get_result
    extract = w2p_timestamp
    key_fn = w2p_user
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    size = W2_SIZE_MS
    last = size - 1
    window_type = sl.windows.TimeWindow
    make = _window_result_maker() if window_function is None else window_function

    def fire(until: int) -> None:
        for t in sorted([t for t in windows if t <= until]):
            window = window_type(t - last, t + 1)
            for key, acc in windows.pop(t).items():
                append(make(key, window, result(acc)))

    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        stamps = list(map(extract, chunk))
        keys = list(map(key_fn, chunk))
        for key, value, ts in zip(keys, chunk, stamps, strict=True):
            t = ts - ts % size + last
            if t <= watermark:
                raise LateDataError(f"W2: record {value} is late for watermark {watermark}")
            accs = pending(t)
            if accs is None:
                accs = windows[t] = {}
            acc = accs.get(key, _MISSING)
            accs[key] = add(value, create() if acc is _MISSING else acc)
        highest = max(highest, *stamps)
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w2_batched(events: list[Event], batch_size: int) -> list[Any]:
    return _run_tumbling(CountSum(), None, events, batch_size)


def w2_fn_batched(events: list[Event], batch_size: int) -> list[W2FnRow]:
    return _run_tumbling(CountSum(), w2_row, events, batch_size)


def w2_sum_batched(events: list[Event], batch_size: int) -> list[Any]:
    return _run_tumbling(sl.agg.sum("amount"), None, events, batch_size)


def _w2_pipeline(events: list[Event], batch_size: int, agg: sl.AggregateFunction,
                 window_function: Callable[[Any, Any, Any], Any] | None = None) -> list[Any]:
    out: list[Any] = []
    p = sl.Pipeline("w2", batch_size=batch_size)
    (p.from_iterable(events)
     .assign_timestamps(w2p_timestamp, W2P_STRATEGY)
     .key_by(w2p_user)
     .window(sl.windows.Tumbling(W2_SIZE_MS))
     .aggregate(agg, window_function)
     .sink(out.append))
    p.run()
    return out


def w2_streamlet(events: list[Event], batch_size: int) -> list[Any]:
    return _w2_pipeline(events, batch_size, CountSum())


def w2_fn_streamlet(events: list[Event], batch_size: int) -> list[W2FnRow]:
    return _w2_pipeline(events, batch_size, CountSum(), w2_row)


def w2_sum_streamlet(events: list[Event], batch_size: int) -> list[Any]:
    return _w2_pipeline(events, batch_size, sl.agg.sum("amount"))


# -- W3: per user, event-time session windows (gap 500 ms), count per session ----------
#
# A sparser stream of its own (``session_events``): 1,000 users, each with
# bursts of records (gaps under 500 ms) separated by silences (over 500 ms),
# 5% of the records displaced back by up to 2 s as in W2p. Each user's
# bursts become sessions; a displaced record that lands in a silence either
# starts a session of its own or, when it comes within the gap of both sides,
# merges two sessions into one. Every session emits ``WindowResult(user,
# window, count)`` when the watermark (2 s behind, as in W2p) passes its end;
# the plain loop builds ``(user, (start, end), count)``.

SESSION_USERS = 1_000
SESSION_GAP_MS = 500
BURST_RECORDS = (1, 10)  # records per burst, uniform
BURST_GAP_MS = (1, 400)  # between the records of a burst: under the session gap
SILENCE_MS = (600, 6_000)  # between bursts: over the session gap
W3_STRATEGY = sl.WatermarkStrategy.bounded_out_of_orderness(OUT_OF_ORDERNESS_MS)

W3Row = tuple[int, Window, int]  # (user, (start, end), count), the plain WindowResult


def session_events(events: list[Event], seed: int = SEED) -> list[Event]:
    """As many events as ``events`` (their ``amount``, not their users or
    times), for ``SESSION_USERS`` users in bursts, in timestamp order, then
    displaced as ``displace_events`` does.

    Every user gets ``len // 1000`` records (one more for the first
    ``len % 1000``): bursts of 1..10 records 1..400 ms apart, separated by
    600..6,000 ms, starting in the first 4 s.
    """
    n = len(events)
    rng = random.Random(seed)
    randint = rng.randint
    records: list[tuple[int, int]] = []  # (ts, user)
    append = records.append
    for user in range(SESSION_USERS):
        left = n // SESSION_USERS + (user < n % SESSION_USERS)
        ts = FIRST_TS + rng.randrange(4_000)
        while left:
            burst = min(left, randint(*BURST_RECORDS))
            left -= burst
            for i in range(burst):
                if i:
                    ts += randint(*BURST_GAP_MS)
                append((ts, user))
            ts += randint(*SILENCE_MS)
    records.sort()
    ordered = [{"user": user, "ts": ts, "amount": e["amount"]}
               for (ts, user), e in zip(records, events, strict=True)]
    return displace_events(ordered, seed)


def w3_plain(events: list[Event], batch_size: int) -> list[W3Row]:  # noqa: PLR0915  # one loop
    """W3 as one loop, merging sessions as the engine does (Flink's rules).

    Each user's open sessions are ``[start, end, count]`` lists. A record
    makes ``[ts, ts + 500)``; sessions it overlaps or touches merge with it.
    A session is due at ``end - 1``: ``timers`` maps that time to its users in
    registration order (a user has at most one session per end), with a heap
    of the times. A session that grows is unregistered and registered again,
    at the end of its time's users, as the engine deletes the old window's
    timer and sets the merged one's. Watermarks as in ``w2p_plain``; due
    sessions are emitted by end, then registration order.
    """
    sessions: dict[int, list[list[int]]] = {}  # user -> open sessions [start, end, count]
    timers: dict[int, dict[int, None]] = {}  # end - 1 -> users, in registration order
    heap: list[int] = []
    out: list[W3Row] = []
    append = out.append
    mine_of = sessions.get
    pending = timers.get
    push = heapq.heappush
    pop = heapq.heappop
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    gap = SESSION_GAP_MS

    def fire(until: int) -> None:
        while heap and heap[0] <= until:
            t = pop(heap)
            end = t + 1
            for u in timers.pop(t):
                mine = sessions[u]
                for i, s in enumerate(mine):
                    if s[1] == end:
                        del mine[i]
                        append((u, (s[0], end), s[2]))
                        break

    for start in range(0, len(events), batch_size):
        for e in events[start:start + batch_size]:
            u = e["user"]
            ts = e["ts"]
            if ts > highest:  # noqa: PLR1730  # a compare costs less than a max() call
                highest = ts
            end = ts + gap
            if end - 1 <= watermark:
                raise LateDataError(f"W3: record {e} is late for watermark {watermark}")
            mine = mine_of(u)
            if mine is None:
                mine = sessions[u] = []
            touching = None
            for s in mine:
                if s[0] <= end and s[1] >= ts:
                    if touching is None:
                        touching = [s]
                    else:
                        touching.append(s)
            if touching is None:
                mine.append([ts, end, 1])
            elif len(touching) == 1:
                first = touching[0]
                if first[0] <= ts and first[1] >= end:
                    first[2] += 1  # inside the session: no new timer
                    continue
                del timers[first[1] - 1][u]  # the session grows: its timer moves
                if ts < first[0]:  # noqa: PLR1730  # a compare costs less than a min() call
                    first[0] = ts
                if end > first[1]:
                    first[1] = end
                else:
                    end = first[1]
                first[2] += 1
            else:
                count = 1
                for s in touching:  # the merged sessions' timers go
                    del timers[s[1] - 1][u]
                    mine.remove(s)
                    ts = min(ts, s[0])
                    end = max(end, s[1])
                    count += s[2]
                mine.append([ts, end, count])
            t = end - 1
            users = pending(t)
            if users is None:
                timers[t] = {u: None}
                push(heap, t)
            else:
                users[u] = None
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w3_batched(events: list[Event], batch_size: int) -> list[Any]:  # noqa: PLR0915
    """The same extractor, key function and aggregate (``sl.agg.count()``) as
    the pipeline, with ``w3_plain``'s session merging and watermarks, and no
    engine: sessions hold accumulators (merged with the aggregate's
    ``merge``), and a ``TimeWindow`` and a ``WindowResult`` are built per
    result."""
    agg = sl.agg.count()
    create = agg.create_accumulator
    add = agg.add
    merge = agg.merge
    result = agg.get_result
    make = _window_result_maker()
    window_type = sl.windows.TimeWindow
    extract = w2p_timestamp
    key_fn = w2p_user
    sessions: dict[Any, list[list[Any]]] = {}  # key -> open sessions [start, end, acc]
    timers: dict[int, dict[Any, None]] = {}
    heap: list[int] = []
    out: list[Any] = []
    append = out.append
    mine_of = sessions.get
    pending = timers.get
    push = heapq.heappush
    pop = heapq.heappop
    highest = watermark = MIN_TS
    behind = OUT_OF_ORDERNESS_MS + 1
    gap = SESSION_GAP_MS

    def fire(until: int) -> None:
        while heap and heap[0] <= until:
            t = pop(heap)
            end = t + 1
            for key in timers.pop(t):
                mine = sessions[key]
                for i, s in enumerate(mine):
                    if s[1] == end:
                        del mine[i]
                        append(make(key, window_type(s[0], end), result(s[2])))
                        break

    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        stamps = list(map(extract, chunk))
        keys = list(map(key_fn, chunk))
        for key, value, ts in zip(keys, chunk, stamps, strict=True):
            end = ts + gap
            if end - 1 <= watermark:
                raise LateDataError(f"W3: record {value} is late for watermark {watermark}")
            mine = mine_of(key)
            if mine is None:
                mine = sessions[key] = []
            touching = None
            for s in mine:
                if s[0] <= end and s[1] >= ts:
                    if touching is None:
                        touching = [s]
                    else:
                        touching.append(s)
            if touching is None:
                mine.append([ts, end, add(value, create())])
            elif len(touching) == 1:
                first = touching[0]
                if first[0] <= ts and first[1] >= end:
                    first[2] = add(value, first[2])
                    continue
                del timers[first[1] - 1][key]
                if ts < first[0]:  # noqa: PLR1730  # a compare costs less than a min() call
                    first[0] = ts
                if end > first[1]:
                    first[1] = end
                else:
                    end = first[1]
                first[2] = add(value, first[2])
            else:
                low = ts
                acc = _MISSING
                for s in sorted(touching):  # accumulators merge in start order
                    del timers[s[1] - 1][key]
                    mine.remove(s)
                    low = min(low, s[0])
                    end = max(end, s[1])
                    acc = s[2] if acc is _MISSING else merge(acc, s[2])
                mine.append([low, end, add(value, acc)])
            t = end - 1
            users = pending(t)
            if users is None:
                timers[t] = {key: None}
                push(heap, t)
            else:
                users[key] = None
        highest = max(highest, *stamps)
        if highest - behind > watermark:
            watermark = highest - behind
            fire(watermark)
    fire(MAX_TS)
    return out


def w3_streamlet(events: list[Event], batch_size: int) -> list[Any]:
    out: list[Any] = []
    p = sl.Pipeline("w3", batch_size=batch_size)
    (p.from_iterable(events)
     .assign_timestamps(w2p_timestamp, W3_STRATEGY)
     .key_by(w2p_user)
     .window(sl.windows.Session(SESSION_GAP_MS))
     .aggregate(sl.agg.count())
     .sink(out.append))
    p.run()
    return out


# -- the registry ---------------------------------------------------------------------

Runner = Callable[[list[Event], int], Any]


def same_events(events: list[Event]) -> list[Event]:
    return events


def same_result(result: Any) -> Any:
    return result


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    plain: Runner
    batched: Runner
    streamlet: Runner
    target: float | None  # the streamlet / plain ratio the engine should reach, if any
    events: Callable[[list[Event]], list[Event]] = same_events  # from the generated events
    canonical: Callable[[Any], Any] = same_result  # what is compared, made after the timing


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (
        Workload("W1", "filter amount % 3 != 0 -> map (user, amount * 2) -> sink sum, count",
                 w1_plain, w1_batched, w1_streamlet, 0.35),
        Workload("W1k", "map (user, amount) -> key_by p[0] -> reduce sum -> sink last per key",
                 w1k_plain, w1k_batched, w1k_streamlet, 0.30),
        Workload("W2p", "5% late; assign_timestamps (2 s bound) -> key_by user -> process: "
                        "ValueState count, timer per second emits (user, second, count)",
                 w2p_plain, w2p_batched, w2p_streamlet, 0.30, displace_events),
        Workload("W2p-map", "as W2p, but a MapState count per second: exact per-second counts",
                 w2p_map_plain, w2p_map_batched, w2p_map_streamlet, None, displace_events),
        Workload("W2p-sqlite", "W2p with state_backend=SQLiteState(fresh temporary directory)",
                 w2p_plain, w2p_batched, w2p_sqlite_streamlet, None, displace_events),
        Workload("W2", "W2p's events -> key_by user -> Tumbling(1 s) event-time windows -> "
                       "aggregate (count, sum amount): a WindowResult per user and window",
                 w2_plain, w2_batched, w2_streamlet, 0.50, displace_events, window_rows),
        Workload("W2-fn", "as W2, with a window function making rows (user, start, count, sum)",
                 w2_fn_plain, w2_fn_batched, w2_fn_streamlet, None, displace_events),
        Workload("W2-agg", "as W2, but aggregate(sl.agg.sum('amount')): the sum only",
                 w2_sum_plain, w2_sum_batched, w2_sum_streamlet, None, displace_events,
                 window_rows),
        Workload("W3", "1,000 users in bursts, 5% late -> key_by user -> Session(500 ms) "
                       "event-time windows -> aggregate(sl.agg.count())",
                 w3_plain, w3_batched, w3_streamlet, 0.30, session_events, window_rows),
    )
}
