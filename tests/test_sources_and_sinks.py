"""Sources over iterables and async iterables; sinks, collect, fan-out and union."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import streamlet as sl

SAFETY = 5  # seconds; a bound on a hung run, never a wait for something to happen


async def run_bounded(pipeline: sl.Pipeline) -> sl.JobResult:
    try:
        return await asyncio.wait_for(pipeline.run_async(), SAFETY)
    except TimeoutError as exc:
        if isinstance(exc, sl.StreamletError):
            raise
        pytest.fail(f"the run hung: not finished after {SAFETY}s", pytrace=False)


# -- from_iterable ----------------------------------------------------------------


def _generator(n: int) -> Iterator[int]:
    yield from range(n)


@pytest.mark.parametrize("batch_size", [1, 3, 1024])
@pytest.mark.parametrize(("make", "expected"), [
    (lambda: [3, 1, 2], [3, 1, 2]),
    (lambda: ("a", "b", "c", "d"), ["a", "b", "c", "d"]),
    (lambda: _generator(10), list(range(10))),
    (lambda: range(5, 12), list(range(5, 12))),
    (lambda: iter([None, 0, "", []]), [None, 0, "", []]),
    (lambda: "xyz", ["x", "y", "z"]),
    (lambda: {"k1": 1, "k2": 2}, ["k1", "k2"]),
    (lambda: [], []),
    (lambda: (), []),
    (lambda: _generator(0), []),
    (lambda: range(0), []),
], ids=["list", "tuple", "generator", "range", "iterator", "str", "dict", "empty-list",
        "empty-tuple", "empty-generator", "empty-range"])
def test_from_iterable_reads_everything_in_order(make: Any, expected: list[Any],
                                                 batch_size: int) -> None:
    p = sl.Pipeline(batch_size=batch_size)
    out = p.from_iterable(make()).collect()
    p.run()
    assert out == expected


def test_from_iterable_over_many_batches() -> None:
    p = sl.Pipeline(batch_size=7)
    out = p.from_iterable(range(10_000)).map(lambda x: x * 2).collect()
    p.run()
    assert out == [x * 2 for x in range(10_000)]


def test_from_iterable_reads_the_generator_lazily_during_the_run() -> None:
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(3):
            produced.append(i)
            yield i

    p = sl.Pipeline()
    out = p.from_iterable(numbers()).collect()
    assert produced == []  # building the pipeline reads nothing
    p.run()
    assert produced == [0, 1, 2]
    assert out == [0, 1, 2]


def test_from_iterable_rejects_a_non_iterable() -> None:
    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError) as info:
        p.from_iterable(5)  # type: ignore[arg-type]
    assert str(info.value) == "from_iterable() takes an iterable, not 5"


def test_empty_source_still_ends_every_operator() -> None:
    p = sl.Pipeline()
    out = (p.from_iterable([]).map(lambda x: x).key_by(lambda x: x)
           .reduce(lambda a, b: a + b).collect())
    result = p.run()
    assert out == []
    assert isinstance(result, sl.JobResult)


# -- from_async_iterable ----------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 64, 1024])
async def test_from_async_iterable_fast_generator(batch_size: int) -> None:
    closed = asyncio.Event()

    async def fast() -> AsyncIterator[int]:
        try:
            for i in range(2_500):
                yield i
        finally:
            closed.set()

    p = sl.Pipeline(batch_size=batch_size)
    out = p.from_async_iterable(fast()).collect()
    await run_bounded(p)
    assert out == list(range(2_500))
    assert closed.is_set()  # a bounded async source ends the run when it ends


async def test_from_async_iterable_trickle_is_not_held_back_for_a_full_batch() -> None:
    """Each item is only produced after the sink has seen the previous one.

    A source that waited for a full batch before handing records on would
    deadlock here (and hit the safety bound).
    """
    n = 20
    seen: list[int] = []
    seen_event = [asyncio.Event() for _ in range(n)]

    async def trickle() -> AsyncIterator[int]:
        for i in range(n):
            yield i
            await seen_event[i].wait()

    def sink(x: int) -> None:
        seen.append(x)
        seen_event[x].set()

    p = sl.Pipeline(batch_size=1024)
    p.from_async_iterable(trickle()).map(lambda x: x).sink(sink)
    await run_bounded(p)
    assert seen == list(range(n))


async def test_from_async_iterable_with_awaits_between_items() -> None:
    async def slowish() -> AsyncIterator[str]:
        for i in range(50):
            for _ in range(i % 4):
                await asyncio.sleep(0)
            yield f"item-{i}"

    p = sl.Pipeline(batch_size=8)
    out = p.from_async_iterable(slowish()).collect()
    await run_bounded(p)
    assert out == [f"item-{i}" for i in range(50)]


async def test_from_async_iterable_over_an_async_iterable_object() -> None:
    class Countdown:
        def __init__(self, start: int) -> None:
            self.start = start

        def __aiter__(self) -> AsyncIterator[int]:
            return self._run()

        async def _run(self) -> AsyncIterator[int]:
            for i in range(self.start, 0, -1):
                await asyncio.sleep(0)
                yield i

    p = sl.Pipeline(batch_size=2)
    out = p.from_async_iterable(Countdown(5)).collect()
    await run_bounded(p)
    assert out == [5, 4, 3, 2, 1]


async def test_from_async_iterable_empty() -> None:
    async def nothing() -> AsyncIterator[int]:
        for _ in ():
            yield 0

    p = sl.Pipeline()
    out = p.from_async_iterable(nothing()).collect()
    await run_bounded(p)
    assert out == []


def test_from_async_iterable_through_run() -> None:
    async def gen() -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    p = sl.Pipeline()
    out = p.from_async_iterable(gen()).map(lambda x: x + 1).collect()
    p.run()
    assert out == [1, 2, 3, 4, 5]


def test_from_async_iterable_rejects_a_sync_iterable() -> None:
    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError) as info:
        p.from_async_iterable([1, 2])  # type: ignore[arg-type]
    assert str(info.value) == "from_async_iterable() takes an async iterable, not [1, 2]"


# -- sinks ------------------------------------------------------------------------


def test_sink_with_a_sync_function() -> None:
    seen: list[int] = []

    def write(x: int) -> None:
        seen.append(x)

    p = sl.Pipeline(batch_size=3)
    sink = p.from_iterable(range(10)).sink(write)
    p.run()
    assert seen == list(range(10))
    assert isinstance(sink, sl.Sink)
    assert sink.name == "write"


def test_sink_with_a_builtin_bound_method() -> None:
    seen: list[str] = []
    p = sl.Pipeline()
    p.from_iterable(["a", "b"]).sink(seen.append)
    p.run()
    assert seen == ["a", "b"]


async def test_sink_with_an_async_function() -> None:
    seen: list[int] = []

    async def write(x: int) -> None:
        await asyncio.sleep(0)
        seen.append(x)

    p = sl.Pipeline(batch_size=4)
    p.from_iterable(range(10)).sink(write)
    await run_bounded(p)
    assert seen == list(range(10))


async def test_sink_with_a_concurrent_async_function_sees_every_record() -> None:
    seen: list[int] = []

    @sl.operator(concurrency=4, ordered=False)
    async def write(x: int) -> None:
        for _ in range(x % 3):
            await asyncio.sleep(0)
        seen.append(x)

    p = sl.Pipeline(batch_size=5)
    p.from_iterable(range(40)).sink(write)
    await run_bounded(p)
    assert sorted(seen) == list(range(40))


async def test_sink_with_an_async_callable_object() -> None:
    class Writer:
        def __init__(self) -> None:
            self.rows: list[int] = []

        async def __call__(self, x: int) -> None:
            await asyncio.sleep(0)
            self.rows.append(x)

    writer = Writer()
    p = sl.Pipeline()
    p.from_iterable([7, 8, 9]).sink(writer)
    await run_bounded(p)
    assert writer.rows == [7, 8, 9]


# -- collect and re-running ------------------------------------------------------


def test_collect_is_a_list_filled_by_the_run() -> None:
    p = sl.Pipeline()
    out = p.from_iterable([1, 2, 3]).collect()
    assert isinstance(out, sl.Collected)
    assert isinstance(out, list)
    assert out == []
    p.run()
    assert out == [1, 2, 3]


def test_second_run_of_the_same_pipeline_gives_the_same_results_not_doubled() -> None:
    p = sl.Pipeline(batch_size=2)
    stream = p.from_iterable([1, 2, 3, 4, 5]).map(lambda x: x * 10)
    out = stream.collect()
    sums = stream.key_by(lambda x: x % 20).reduce(lambda a, b: a + b).collect()
    p.run()
    first, first_sums = list(out), sorted(sums)
    p.run()
    assert out == first == [10, 20, 30, 40, 50]
    assert sorted(sums) == first_sums == [10, 20, 40, 60, 90]  # keyed state starts over


async def test_second_run_with_run_async_also_starts_fresh() -> None:
    p = sl.Pipeline()
    out = p.from_iterable(("a", "b")).collect()
    await run_bounded(p)
    await run_bounded(p)
    assert out == ["a", "b"]


def test_two_collects_of_one_stream_get_the_same_records() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable(range(4))
    first = stream.collect()
    second = stream.collect(name="again")
    p.run()
    assert first == second == [0, 1, 2, 3]


# -- fan-out ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 1024])
def test_fan_out_one_stream_into_two_sinks(batch_size: int) -> None:
    calls: list[int] = []

    def enrich(x: int) -> int:
        calls.append(x)
        return x * 2

    left: list[int] = []
    right: list[int] = []
    p = sl.Pipeline(batch_size=batch_size)
    enriched = p.from_iterable(range(10)).map(enrich)
    enriched.sink(left.append, name="left")
    enriched.filter(lambda x: x % 4 == 0).sink(right.append, name="right")
    p.run()
    assert left == [x * 2 for x in range(10)]
    assert right == [0, 4, 8, 12, 16]
    assert calls == list(range(10))  # upstream runs once per record, not once per branch


async def test_fan_out_into_a_sync_and_an_async_sink() -> None:
    sync_seen: list[int] = []
    async_seen: list[int] = []

    @sl.operator(concurrency=3)
    async def write(x: int) -> None:
        await asyncio.sleep(0)
        async_seen.append(x)

    p = sl.Pipeline(batch_size=4)
    stream = p.from_iterable(range(20))
    stream.sink(sync_seen.append)
    stream.sink(write)
    await run_bounded(p)
    assert sync_seen == list(range(20))
    assert async_seen == list(range(20))


def test_fan_out_across_a_key_by() -> None:
    p = sl.Pipeline()
    keyed = p.from_iterable([("a", 1), ("b", 2), ("a", 3)]).key_by(lambda r: r[0])
    totals = keyed.reduce(lambda acc, r: (r[0], acc[1] + r[1])).collect()
    raw = keyed.collect()
    p.run()
    assert raw == [("a", 1), ("b", 2), ("a", 3)]
    assert totals == [("a", 1), ("b", 2), ("a", 4)]


# -- union -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 4, 1024])
def test_union_of_three_streams_keeps_every_record_and_per_input_order(
        seed: int, batch_size: int) -> None:
    p = sl.Pipeline(batch_size=batch_size, scheduling_seed=seed)
    a = p.from_iterable([("a", i) for i in range(50)], name="a")
    b = p.from_iterable(("b", i) for i in range(30))
    c = p.from_iterable([("c", i) for i in range(40)], name="c").map(lambda r: r)
    out = a.union(b, c).collect()
    p.run()
    assert len(out) == 120
    for tag, n in (("a", 50), ("b", 30), ("c", 40)):
        assert [i for t, i in out if t == tag] == list(range(n))


def test_union_with_an_empty_stream() -> None:
    p = sl.Pipeline()
    a = p.from_iterable([1, 2])
    b = p.from_iterable([])
    c = p.from_iterable([3])
    out = a.union(b, c).collect()
    p.run()
    assert sorted(out) == [1, 2, 3]


def test_union_of_a_stream_with_itself_doubles_it() -> None:
    p = sl.Pipeline()
    a = p.from_iterable([1, 2, 3])
    out = a.union(a).collect()
    p.run()
    assert sorted(out) == [1, 1, 2, 2, 3, 3]


def test_union_feeds_keyed_operators() -> None:
    p = sl.Pipeline(batch_size=2)
    a = p.from_iterable([("x", 1), ("y", 1)])
    b = p.from_iterable([("x", 10), ("y", 10)])
    c = p.from_iterable([("x", 100)])
    totals = (a.union(b, c).key_by(lambda r: r[0])
              .reduce(lambda acc, r: (r[0], acc[1] + r[1])).collect())
    p.run()
    final = {}
    for k, v in totals:
        final[k] = v
    assert final == {"x": 111, "y": 11}


def test_union_needs_other_streams_of_the_same_pipeline() -> None:
    p = sl.Pipeline()
    q = sl.Pipeline()
    a = p.from_iterable([1])
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^union\(\) needs at least one other stream$"):
        a.union()
    other = q.from_iterable([2])
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^union\(\) takes streams of the same pipeline, not "):
        a.union(other)


# -- side outputs and dead letters of a sink ---------------------------------------


def test_dead_letters_of_a_sink() -> None:
    written: list[int] = []

    def write(x: int) -> None:
        if x < 0:
            raise ValueError(f"negative: {x}")
        written.append(x)

    p = sl.Pipeline()
    sink = p.from_iterable([1, -2, 3, -4, 5]).sink(write, name="db", on_error="dead_letter")
    dead = sink.dead_letters().collect()
    p.run()
    assert written == [1, 3, 5]
    assert [(d.operator, d.value, str(d.error)) for d in dead] == [
        ("db", -2, "negative: -2"), ("db", -4, "negative: -4")]


async def test_dead_letters_of_an_async_sink_into_another_sink() -> None:
    retried: list[int] = []

    @sl.operator(concurrency=2, on_error="dead_letter")
    async def write(x: int) -> None:
        await asyncio.sleep(0)
        if x % 3 == 0:
            raise ConnectionError("db down")

    p = sl.Pipeline(batch_size=4)
    sink = p.from_iterable(range(10)).sink(write)
    sink.dead_letters().map(lambda d: d.value).sink(retried.append)
    await run_bounded(p)
    assert retried == [0, 3, 6, 9]


def test_side_output_of_a_sink_that_emits_nothing_there_is_empty() -> None:
    p = sl.Pipeline()
    sink = p.from_iterable([1, 2]).sink(lambda x: None)
    nothing = sink.side_output("late").collect()
    p.run()
    assert nothing == []


def test_side_output_tag_must_be_a_non_empty_str() -> None:
    p = sl.Pipeline()
    sink = p.from_iterable([1]).sink(print)
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^a side output tag is a non-empty str, not ''$"):
        sink.side_output("")


def test_dead_letters_of_a_sink_without_dead_letter_mode_is_rejected() -> None:
    p = sl.Pipeline()
    sink = p.from_iterable([1]).sink(print, name="out")
    with pytest.raises(sl.StreamletConfigError, match=r"^operator 'out' has no dead-letter"):
        sink.dead_letters()


async def test_dead_letters_of_a_sink_through_a_key_by_finish() -> None:
    """Dead letters feeding another task (a keyed reduce) must end when the input ends."""
    p = sl.Pipeline()
    sink = p.from_iterable([1, -2, 3, -4]).sink(
        lambda x: 1 // (x if x > 0 else 0), name="db", on_error="dead_letter")
    per_operator = (sink.dead_letters().key_by(lambda d: d.operator)
                    .reduce(lambda acc, d: acc).map(lambda d: d.value).collect())
    await run_bounded(p)
    assert per_operator == [-2, -2]


async def test_dead_letters_into_a_concurrent_async_map_are_all_delivered() -> None:
    """Records still in flight in an async operator behind a dead-letter output are kept."""

    @sl.operator(concurrency=4)
    async def describe(d: sl.DeadLetter) -> str:
        await asyncio.sleep(0)
        return f"{d.value}: {d.error_message}"

    p = sl.Pipeline()
    sink = p.from_iterable(["1", "x", "2", "y"]).sink(int, on_error="dead_letter")
    out = sink.dead_letters().map(describe).collect()
    await run_bounded(p)
    assert out == ["x: ValueError: invalid literal for int() with base 10: 'x'",
                   "y: ValueError: invalid literal for int() with base 10: 'y'"]


async def test_dead_letters_in_a_union_finish() -> None:
    p = sl.Pipeline()
    parsed = p.from_iterable(["1", "x"]).map(int, name="parse", on_error="dead_letter")
    errors = parsed.dead_letters().map(lambda d: f"bad {d.value}")
    out = parsed.map(str).union(errors).collect()
    await run_bounded(p)
    assert sorted(out) == ["1", "bad x"]


def test_run_gives_the_garbage_collector_its_settings_back() -> None:
    # Pipeline.run tunes the collector while the job runs (see _pipeline.py);
    # the program around it gets its own thresholds and nothing left frozen,
    # also when the job fails.
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def look(value: int) -> None:
        seen.append(gc.get_threshold())
        if value == 2:
            raise ValueError("stop")

    p = sl.Pipeline()
    p.from_iterable([1, 2]).sink(look)
    with pytest.raises(sl.UserFunctionError):
        p.run()
    assert seen and seen[0] != before  # tuned while running
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
