"""Keyed state: every state type, scoped to the current key, and TTL in
processing time, on the memory backend and on SQLite.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamlet as sl
from streamlet.state.sqlite import SQLiteState
from streamlet.testing import FunctionHarness, ManualClock, TestSource, start

BACKENDS = [pytest.param("memory", id="memory"), pytest.param("sqlite", id="sqlite")]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A ``state_backend=`` value: None for memory, or SQLite under tmp_path."""
    if request.param == "memory":
        return None
    return SQLiteState(tmp_path / "state", cache_size=2)  # tiny: most reads hit the file


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    gc.collect()
    yield
    gc.collect()


class Average(sl.AggregateFunction[tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Any, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]


class AllStates(sl.KeyedProcessFunction):
    """Feeds every record's number into one state of each type and emits a
    snapshot of the key's state after each record."""

    last = sl.ValueState("last")
    count = sl.ValueState("count", default=0)
    history = sl.ListState("history")
    tally = sl.MapState("tally")
    total = sl.ReducingState("total", lambda a, b: a + b)
    mean = sl.AggregatingState("mean", Average())

    def process(self, value: Any, ctx: sl.Context) -> Any:
        _, n = value
        before = (self.last.value(), self.total.get(), self.mean.get())
        self.last.update(n)
        self.count.update(self.count.value() + 1)
        self.history.add(n)
        parity = "odd" if n % 2 else "even"
        self.tally.put(parity, self.tally.get(parity, 0) + 1)
        self.total.add(n)
        self.mean.add(n)
        return (ctx.key, before, self.count.value(), self.history.get(),
                sorted(self.tally.items()), self.total.get(), self.mean.get())


def test_every_state_type_is_scoped_to_the_key(backend: Any) -> None:
    records = [("a", 1), ("b", 10), ("a", 2), (1, 100), ("1", 5), ("b", 20), ("a", 3),
               (("a", 1), 7)]
    p = sl.Pipeline(batch_size=3, state_backend=backend)
    out = p.from_iterable(records).key_by(lambda r: r[0]).process(AllStates()).collect()
    p.run()
    assert out == [
        ("a", (None, None, None), 1, [1], [("odd", 1)], 1, 1.0),
        ("b", (None, None, None), 1, [10], [("even", 1)], 10, 10.0),
        ("a", (1, 1, 1.0), 2, [1, 2], [("even", 1), ("odd", 1)], 3, 1.5),
        (1, (None, None, None), 1, [100], [("even", 1)], 100, 100.0),
        ("1", (None, None, None), 1, [5], [("odd", 1)], 5, 5.0),
        ("b", (10, 10, 10.0), 2, [10, 20], [("even", 2)], 30, 15.0),
        ("a", (2, 3, 1.5), 3, [1, 2, 3], [("even", 1), ("odd", 2)], 6, 2.0),
        (("a", 1), (None, None, None), 1, [7], [("odd", 1)], 7, 7.0),
    ]


class Ops(sl.KeyedProcessFunction):
    """Runs one state operation per record: (key, state, op, *args) -> result."""

    value = sl.ValueState("value", default="none")
    items = sl.ListState("items")
    entries = sl.MapState("entries")
    total = sl.ReducingState("total", max)
    mean = sl.AggregatingState("mean", Average())

    def process(self, record: Any, ctx: sl.Context) -> Any:
        _, state, op, *args = record
        result = getattr(getattr(self, state), op)(*args)
        return (ctx.key, state, op, result)


def test_state_operations(backend: Any) -> None:
    script = [
        ("a", "items", "add_all", [1, 2]),
        ("b", "items", "add", 9),
        ("a", "items", "add", 3),
        ("a", "items", "get"),
        ("a", "items", "update", [7]),
        ("a", "items", "get"),
        ("a", "items", "update", []),
        ("a", "items", "get"),
        ("b", "items", "get"),
        ("b", "items", "clear"),
        ("b", "items", "get"),
        ("a", "entries", "put_all", {"x": 1, "y": 2}),
        ("a", "entries", "contains", "x"),
        ("b", "entries", "contains", "x"),
        ("b", "entries", "is_empty"),
        ("a", "entries", "remove", "x"),
        ("a", "entries", "keys"),
        ("a", "entries", "values"),
        ("a", "entries", "remove", "y"),
        ("a", "entries", "is_empty"),
        ("a", "entries", "get", "y", "gone"),
        ("a", "value", "value"),
        ("a", "value", "update", "set"),
        ("b", "value", "value"),
        ("a", "value", "value"),
        ("a", "value", "clear"),
        ("a", "value", "value"),
        ("a", "total", "add", 4),
        ("a", "total", "add", 9),
        ("a", "total", "add", 2),
        ("a", "total", "get"),
        ("b", "total", "get"),
        ("a", "mean", "add", 1),
        ("a", "mean", "add", 4),
        ("a", "mean", "get"),
        ("a", "mean", "clear"),
        ("a", "mean", "get"),
    ]
    p = sl.Pipeline(batch_size=4, state_backend=backend)
    out = p.from_iterable(script).key_by(lambda r: r[0]).process(Ops()).collect()
    p.run()
    results = [result for _, _, _, result in out]
    assert results == [
        None, None, None, [1, 2, 3],
        None, [7], None, [], [9], None, [],
        None, True, False, True, None, ["y"], [2], None, True, "gone",
        "none", None, "none", "set", None, "none",
        None, None, None, 9, None,
        None, None, 2.5, None, None,
    ]


def test_a_mutable_default_is_not_shared_between_keys(backend: Any) -> None:
    class Collect(sl.KeyedProcessFunction):
        seen = sl.ValueState("seen", default=[])

        def process(self, value: Any, ctx: sl.Context) -> Any:
            seen = self.seen.value()
            seen.append(value[1])
            self.seen.update(seen)
            return (ctx.key, list(seen))

    p = sl.Pipeline(state_backend=backend)
    records = [("a", 1), ("b", 2), ("a", 3)]
    out = p.from_iterable(records).key_by(lambda r: r[0]).process(Collect()).collect()
    p.run()
    assert out == [("a", [1]), ("b", [2]), ("a", [1, 3])]


def test_the_harness_shows_state_per_key(backend: Any) -> None:
    with FunctionHarness(AllStates(), key=lambda r: r[0], state_backend=backend) as harness:
        harness.process(("a", 1))
        harness.process(("b", 2))
        harness.process(("a", 3))
        assert harness.state("count", "a") == 2
        assert harness.state("count", "b") == 1
        assert harness.state("history", "a") == [1, 3]
        assert harness.state("tally", "b") == {"even": 1}
        assert harness.state("count", "c") is None
        with pytest.raises(sl.StreamletConfigError,
                           match=r"^the function declares no state named 'nope'$"):
            harness.state("nope", "a")


def test_state_descriptors_are_checked() -> None:
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^state 'v': ttl_update='on_read'; choose 'on_write' or "
                             r"'on_read_and_write'$"):
        sl.ValueState("v", ttl=10, ttl_update="on_read")
    with pytest.raises(sl.StreamletConfigError, match=r"^state 'v': ttl must be positive$"):
        sl.ValueState("v", ttl=0)
    with pytest.raises(sl.StreamletConfigError, match=r"^a state name is a non-empty str"):
        sl.ListState("")
    with pytest.raises(sl.StreamletConfigError, match=r"^state 'r': reduce_fn must be callable$"):
        sl.ReducingState("r", 5)  # type: ignore[arg-type]
    with pytest.raises(sl.StreamletConfigError, match=r"^state 'g': agg must be an "
                       "sl.AggregateFunction"):
        sl.AggregatingState("g", max)  # type: ignore[arg-type]

    class Twice(sl.KeyedProcessFunction):
        a = sl.ValueState("same")
        b = sl.ListState("same")

    p = sl.Pipeline()
    p.from_iterable([1]).key_by(lambda v: v).process(Twice()).collect()
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^Twice declares state named \['same'\] twice; state names must "
                             r"be unique within a function$"):
        p.run()


# -- TTL ------------------------------------------------------------------------------


def ttl_function(update: str) -> sl.KeyedProcessFunction:
    class WithTtl(sl.KeyedProcessFunction):
        value = sl.ValueState("value", default="expired", ttl=1_000, ttl_update=update)
        items = sl.ListState("items", ttl=1_000, ttl_update=update)
        entries = sl.MapState("entries", ttl=1_000, ttl_update=update)
        total = sl.ReducingState("total", lambda a, b: a + b, ttl=1_000, ttl_update=update)
        mean = sl.AggregatingState("mean", Average(), ttl=1_000, ttl_update=update)

        def process(self, record: Any, ctx: sl.Context) -> Any:
            assert ctx.timers is not None
            _, op = record
            if op == "write":
                self.value.update("v")
                self.items.add(1)
                self.entries.put("m", 1)
                self.total.add(1)
                self.mean.add(1)
                return None
            return (ctx.timers.current_processing_time(), self.value.value(), self.items.get(),
                    self.entries.items(), self.total.get(), self.mean.get())
    return WithTtl()


LIVE: tuple[Any, ...] = ("v", [1], [("m", 1)], 1, 1.0)
GONE: tuple[Any, ...] = ("expired", [], [], None, None)


async def drive(update: str, backend: Any, steps: list[tuple[int, str]]) -> list[Any]:
    """Advance the clock to each step's time and feed one record for key "k"."""
    clock = ManualClock(0)
    source = TestSource()
    p = sl.Pipeline(clock=clock, state_backend=backend)
    out = p.from_source(source).key_by(lambda r: r[0]).process(ttl_function(update)).collect()
    async with start(p, source) as job:
        for when, op in steps:
            clock.advance_to(when)
            await job.settle()
            source.add(("k", op))
            await job.settle()
        source.end()
        await job.finish()
    return [(t, tuple(rest)) for t, *rest in out]


async def test_ttl_on_write_expires_after_the_last_write(backend: Any) -> None:
    out = await drive("on_write", backend, [
        (0, "write"), (600, "read"), (999, "read"), (1_000, "read"),
        (2_000, "write"), (2_500, "write"), (3_400, "read"), (3_500, "read"),
        (10_000, "read"),
    ])
    assert out == [(600, LIVE), (999, LIVE), (1_000, GONE),
                   # written twice, 500 ms apart: the second write counts
                   (3_400, ("v", [1, 1], [("m", 1)], 2, 1.0)), (3_500, GONE),
                   (10_000, GONE)]


async def test_ttl_on_read_and_write_is_refreshed_by_reads(backend: Any) -> None:
    out = await drive("on_read_and_write", backend, [
        (0, "write"), (600, "read"), (1_500, "read"), (2_499, "read"), (3_498, "read"),
        (4_497, "read"), (5_497, "read"),
    ])
    # each read moves the expiry to read time + 1000: every read up to 4497 lands just in
    # time; the last comes exactly 1000 ms after the one before it
    assert out == [(600, LIVE), (1_500, LIVE), (2_499, LIVE), (3_498, LIVE),
                   (4_497, LIVE), (5_497, GONE)]


async def test_ttl_on_write_is_not_refreshed_by_reads(backend: Any) -> None:
    out = await drive("on_write", backend, [
        (0, "write"), (600, "read"), (900, "read"), (1_500, "read"),
    ])
    assert out == [(600, LIVE), (900, LIVE), (1_500, GONE)]


async def test_ttl_state_written_after_expiry_starts_afresh(backend: Any) -> None:
    out = await drive("on_write", backend, [
        (0, "write"), (1_000, "write"), (1_001, "read"),
    ])
    # the old entry had expired: a new list, a new count, a new accumulator
    assert out == [(1_001, LIVE)]


def test_ttl_in_the_harness_reads_the_raw_entry(backend: Any) -> None:
    clock = ManualClock(0)
    fn = ttl_function("on_write")
    with FunctionHarness(fn, key=lambda r: r[0], clock=clock, state_backend=backend) as harness:
        harness.process(("k", "write"))
        assert harness.state("value", "k") == ("v", 1_000)
        harness.advance_processing_time(1_000)
        harness.process(("k", "read"))
        assert harness.output == [(1_000, *GONE)]
        assert harness.state("value", "k") is None  # an expired entry is dropped when met
