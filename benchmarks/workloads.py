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
"""

from __future__ import annotations

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


# -- the registry ---------------------------------------------------------------------

Runner = Callable[[list[Event], int], Any]


def same_events(events: list[Event]) -> list[Event]:
    return events


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    plain: Runner
    batched: Runner
    streamlet: Runner
    target: float | None  # the streamlet / plain ratio the engine should reach, if any
    events: Callable[[list[Event]], list[Event]] = same_events  # from the generated events


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
    )
}
