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
"""

from __future__ import annotations

import random
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


# -- the registry ---------------------------------------------------------------------

Runner = Callable[[list[Event], int], Any]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    plain: Runner
    batched: Runner
    streamlet: Runner
    target: float  # the streamlet / plain ratio the engine should reach


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (
        Workload("W1", "filter amount % 3 != 0 -> map (user, amount * 2) -> sink sum, count",
                 w1_plain, w1_batched, w1_streamlet, 0.35),
        Workload("W1k", "map (user, amount) -> key_by p[0] -> reduce sum -> sink last per key",
                 w1k_plain, w1k_batched, w1k_streamlet, 0.30),
    )
}
