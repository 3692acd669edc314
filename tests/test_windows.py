"""Windows: assigner arithmetic, triggers, evictors, allowed lateness, the
window functions, ``sl.agg``, errors, and the SQLite backend.

Records are ``(key, timestamp, value)`` tuples unless a test says otherwise.
Bounded runs use ``Pipeline(batch_size=1)``, so a watermark (the highest
timestamp so far - 1) follows every record; tests that need to place each
watermark themselves drive the job with ``TestSource`` and ``start``, and
processing time with ``ManualClock``.

Event-time tumbling windows with the default trigger, no evictor and memory
state run on a specialised operator; ``MODES`` runs the tests that matter
for it three ways: that operator (``fast``), the general operator (forced
by giving the default trigger explicitly, ``general``), and the general
operator on SQLite with a one-entry cache, so every access goes through the
file (``sqlite``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import streamlet as sl
from streamlet.testing import ManualClock, TestSource, start
from streamlet.windows import (
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    Count,
    CountEvictor,
    CountTrigger,
    EventTimeTrigger,
    Evictor,
    Global,
    GlobalWindow,
    NeverTrigger,
    PurgingTrigger,
    Session,
    Sliding,
    TimeEvictor,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    Tumbling,
    WindowResult,
)

MAX = 2**63 - 1
MONO = sl.WatermarkStrategy.for_monotonous_timestamps()
MODES = ["fast", "general", "sqlite"]
FIX_HINT = ("Fix the function, or pass on_error='dead_letter' to the operator to route "
            "such records to its dead-letter output and keep going.")

Record = tuple[Any, int, Any]


# -- helpers ----------------------------------------------------------------------------


def backend_for(mode: str, tmp_path: Path) -> Any:
    if mode == "sqlite":
        return sl.SQLiteState(tmp_path / "state", cache_size=1)
    if mode == "sqlite-default":
        return sl.SQLiteState(tmp_path / "state")
    return None


def windowed(keyed: sl.KeyedStream, assigner: Any, mode: str = "fast") -> sl.WindowedStream:
    """``keyed.window(assigner)``; in ``general`` mode with the default trigger
    given explicitly, which takes the general operator."""
    ws = keyed.window(assigner)
    if mode == "general":
        ws = ws.trigger(EventTimeTrigger())
    return ws


def keyed_records(p: sl.Pipeline, records: list[Record],
                  strategy: sl.WatermarkStrategy = MONO) -> sl.KeyedStream:
    return (p.from_iterable(records)
            .assign_timestamps(lambda r: r[1], strategy, name="stamp")
            .key_by(lambda r: r[0]))


def run(records: list[Record], build: Callable[[sl.KeyedStream], sl.Stream], *,
        batch_size: int = 1, state_backend: Any = None,
        strategy: sl.WatermarkStrategy = MONO) -> list[Any]:
    p = sl.Pipeline("windows", batch_size=batch_size, state_backend=state_backend)
    out = build(keyed_records(p, records, strategy)).collect()
    p.run()
    return list(out)


def rows(results: list[Any]) -> list[tuple[Any, int, int, Any]]:
    """WindowResults as (key, start, end, value)."""
    assert all(isinstance(r, WindowResult) for r in results), results
    return [(r.key, r.window.start, r.window.end, r.value) for r in results]


def add(acc: Record, value: Record) -> Record:
    """A reduce over records: sums the values, keeps the first key and timestamp."""
    return (acc[0], acc[1], acc[2] + value[2])


def values_of(key: Any, window: Any, values: list[Record]) -> tuple[Any, int, int, list[Any]]:
    return (key, window.start, window.end, [v[2] for v in values])


class Stamp(sl.ProcessFunction):
    """Pairs each record with its event time, to see the timestamps of results."""

    def process(self, value: Any, ctx: sl.Context) -> Any:
        return (value, ctx.timestamp)


def brute_sliding(ts: int, size: int, slide: int, offset: int) -> set[TimeWindow]:
    return {TimeWindow(s, s + size) for s in range(ts - 3 * size, ts + 1)
            if (s - offset) % slide == 0 and s <= ts < s + size}


# -- assigners: the arithmetic ------------------------------------------------------------


@pytest.mark.parametrize(("ts", "start"), [
    (0, 0), (9, 0), (10, 10), (19, 10), (-1, -10), (-10, -10), (-11, -20), (-25, -30),
])
def test_tumbling_window_of_a_timestamp(ts: int, start: int) -> None:
    assert Tumbling(10).assign(None, ts) == [TimeWindow(start, start + 10)]


@pytest.mark.parametrize(("ts", "start"), [
    (2, -7), (3, 3), (12, 3), (13, 13), (-7, -7), (-8, -17), (-17, -17),
])
def test_tumbling_window_with_an_offset(ts: int, start: int) -> None:
    assert Tumbling(10, offset=3).assign(None, ts) == [TimeWindow(start, start + 10)]
    # an offset of more than a size is the same offset modulo the size
    assert Tumbling(10, offset=23).assign(None, ts) == [TimeWindow(start, start + 10)]
    assert Tumbling(timedelta(milliseconds=10), offset=timedelta(milliseconds=3)).assign(
        None, ts) == [TimeWindow(start, start + 10)]


def test_tumbling_takes_timedeltas() -> None:
    assert Tumbling(timedelta(seconds=1)).assign(None, 1_500) == [TimeWindow(1_000, 2_000)]


def test_time_window_bounds_and_touching() -> None:
    w = TimeWindow(0, 10)
    assert w.max_timestamp == 9
    assert w.intersects(TimeWindow(10, 20))  # touching windows merge, as in Flink
    assert w.intersects(TimeWindow(-5, 0))
    assert not w.intersects(TimeWindow(11, 20))
    assert w.cover(TimeWindow(15, 20)) == TimeWindow(0, 20)


@pytest.mark.parametrize(("size", "slide", "offset", "ts", "starts"), [
    (10, 5, 0, 7, [5, 0]),
    (10, 5, 0, 5, [5, 0]),
    (10, 5, 0, -1, [-5, -10]),
    (10, 3, 0, 5, [3, 0, -3]),        # size not a multiple of slide
    (10, 3, 0, 0, [0, -3, -6, -9]),
    (10, 4, 0, 14, [12, 8]),
    (10, 5, 2, 7, [7, 2]),
    (3, 10, 0, 5, []),                # slide > size: some timestamps are in no window
    (3, 10, 0, 11, [10]),
])
def test_sliding_windows_of_a_timestamp(size: int, slide: int, offset: int, ts: int,
                                        starts: list[int]) -> None:
    windows = Sliding(size, slide, offset=offset).assign(None, ts)
    assert windows == [TimeWindow(s, s + size) for s in starts]


@pytest.mark.parametrize(("size", "slide", "offset"), [(10, 3, 0), (10, 3, 1), (7, 2, 5),
                                                       (12, 4, 0), (2, 5, 3)])
def test_sliding_windows_are_exactly_the_windows_holding_the_timestamp(
        size: int, slide: int, offset: int) -> None:
    assigner = Sliding(size, slide, offset=offset)
    for ts in range(-40, 40):
        windows = assigner.assign(None, ts)
        assert len(windows) == len(set(windows))
        assert set(windows) == brute_sliding(ts, size, slide, offset % slide), ts


def test_session_windows_start_at_the_record() -> None:
    assert Session(10).assign("x", 5) == [TimeWindow(5, 15)]
    assert Session(timedelta(seconds=2)).assign("x", -1) == [TimeWindow(-1, 1_999)]
    dynamic = Session(lambda r: r["gap"])
    assert dynamic.assign({"gap": 3}, 5) == [TimeWindow(5, 8)]
    assert Session(lambda r: timedelta(milliseconds=r)).assign(7, 1) == [TimeWindow(1, 8)]


def test_global_and_count_assigners() -> None:
    assert Global().assign("x", 5) == [GlobalWindow()]
    assert GlobalWindow().max_timestamp == MAX
    assert not Global().is_event_time
    assert repr(Global().default_trigger()) == "NeverTrigger()"
    assert repr(Count(3).default_trigger()) == "PurgingTrigger(CountTrigger(3))"
    assert repr(Count(3, 2).default_trigger()) == "CountTrigger(2)"
    assert repr(Tumbling(10).default_trigger()) == "EventTimeTrigger()"
    assert repr(Tumbling(10, processing_time=True).default_trigger()) == (
        "ProcessingTimeTrigger()")


# -- assigners in a pipeline ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_tumbling_with_an_offset_and_negative_timestamps(mode: str, tmp_path: Path) -> None:
    records = [("b", -5, 8), ("a", -25, 100), ("a", 2, 1), ("a", 3, 2), ("a", 12, 4),
               ("a", 13, 16)]
    records.sort(key=lambda r: r[1])
    out = run(records, lambda k: windowed(k, Tumbling(10, offset=3), mode)
              .reduce(add).process(Stamp()), state_backend=backend_for(mode, tmp_path))
    got = [(r.key, r.window.start, r.window.end, r.value[2], ts) for r, ts in out]
    assert got == [
        ("a", -27, -17, 100, -18),
        ("b", -7, 3, 8, 2),          # timers of one instant fire in registration order
        ("a", -7, 3, 1, 2),
        ("a", 3, 13, 6, 12),
        ("a", 13, 23, 16, 22),       # fired by the end of input
    ]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_sliding_windows_with_a_slide_that_does_not_divide_the_size(
        mode: str, tmp_path: Path) -> None:
    records = [("a", 1, 1), ("a", 5, 2), ("a", 9, 3), ("a", 14, 4)]
    out = run(records, lambda k: k.window(Sliding(10, 4))
              .aggregate(sl.agg.collect_list(2)).process(Stamp()),
              state_backend=backend_for(mode, tmp_path))
    assert [(r.window.start, r.window.end, r.value, ts) for r, ts in out] == [
        (-8, 2, [1], 1),
        (-4, 6, [1, 2], 5),
        (0, 10, [1, 2, 3], 9),
        (4, 14, [2, 3], 13),
        (8, 18, [3, 4], 17),
        (12, 22, [4], 21),
    ]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_session_windows_merge_when_they_overlap_or_touch(mode: str, tmp_path: Path) -> None:
    # one batch, so the out-of-order records meet no watermark on the way
    records = [("a", 0, "a0"), ("a", 20, "a20"), ("a", 10, "a10"),  # [0,10) [20,30) bridged
               ("b", 0, "b0"), ("b", 11, "b11"),                     # 11 > 0 + 10: apart
               ("c", 0, "c0"), ("c", 10, "c10"),                     # touching: merged
               ("d", 5, "d5"), ("d", 7, "d7")]                       # inside: extended
    out = run(records, lambda k: k.window(Session(10)).aggregate(sl.agg.collect_list(2)),
              batch_size=100, state_backend=backend_for(mode, tmp_path))
    assert sorted(rows(out)) == [
        ("a", 0, 30, ["a0", "a20", "a10"]),
        ("b", 0, 10, ["b0"]),
        ("b", 11, 21, ["b11"]),
        ("c", 0, 20, ["c0", "c10"]),
        ("d", 5, 17, ["d5", "d7"]),
    ]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_session_windows_with_a_gap_per_record(mode: str, tmp_path: Path) -> None:
    # (key, ts, gap): [0,5) holds 4 ([4,5) inside); 7 starts anew; 16 extends [7,17) to 18
    records = [("a", 0, 5), ("a", 4, 1), ("a", 7, 10), ("a", 16, 2), ("a", 30, 1)]
    out = run(records, lambda k: k.window(Session(lambda r: timedelta(milliseconds=r[2])))
              .aggregate(sl.agg.collect_list(1)), batch_size=100,
              state_backend=backend_for(mode, tmp_path))
    assert rows(out) == [("a", 0, 5, [0, 4]), ("a", 7, 18, [7, 16]), ("a", 30, 31, [30])]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_global_window_with_a_count_trigger_accumulates(mode: str, tmp_path: Path) -> None:
    records = [("a", t, t) for t in range(1, 6)]
    out = run(records, lambda k: k.window(Global()).trigger(CountTrigger(2))
              .process(values_of).process(Stamp()), state_backend=backend_for(mode, tmp_path))
    start_, end_ = GlobalWindow().start, GlobalWindow().end
    assert out == [(("a", start_, end_, [1, 2]), MAX),
                   (("a", start_, end_, [1, 2, 3, 4]), MAX)]  # 5 never fires


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_count_windows_tumbling(mode: str, tmp_path: Path) -> None:
    records = [("a", 1, 1), ("b", 1, 10), ("a", 2, 2), ("a", 3, 3), ("b", 2, 20),
               ("a", 4, 4), ("a", 5, 5), ("a", 6, 6), ("a", 7, 7), ("b", 3, 30)]
    out = run(records, lambda k: k.window(Count(3)).process(values_of),
              state_backend=backend_for(mode, tmp_path))
    assert [(k, v) for k, _, _, v in out] == [("a", [1, 2, 3]), ("a", [4, 5, 6]),
                                              ("b", [10, 20, 30])]  # a's 7 never fires


@pytest.mark.parametrize(("n", "slide", "expected"), [
    (3, 1, [[1], [1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]),
    (3, 2, [[1, 2], [2, 3, 4]]),
    (2, 3, [[2, 3]]),
])
@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_count_windows_sliding(n: int, slide: int, expected: list[list[int]], mode: str,
                               tmp_path: Path) -> None:
    records = [("a", t, t) for t in range(1, 6)]
    out = run(records, lambda k: k.window(Count(n, slide)).process(values_of),
              state_backend=backend_for(mode, tmp_path))
    assert [v for *_, v in out] == expected


def test_count_windows_need_no_timestamps() -> None:
    p = sl.Pipeline(batch_size=1)
    out = (p.from_iterable(range(7)).key_by(lambda v: v % 2).window(Count(2))
           .aggregate(sl.agg.collect_list())).collect()
    p.run()
    assert [(r.key, r.value) for r in out] == [(0, [0, 2]), (1, [1, 3]), (0, [4, 6])]


# -- triggers ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_event_time_windows_fire_when_the_watermark_reaches_their_end(
        mode: str, tmp_path: Path) -> None:
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    src = TestSource()
    keyed = p.from_source(src).key_by(lambda r: r[0])
    out = windowed(keyed, Tumbling(10), mode).aggregate(sl.agg.sum(1)).collect()
    async with start(p, src) as job:
        for ts in (1, 9, 10):
            src.add(("a", ts), timestamp=ts)
        src.add(("b", 3), timestamp=3)
        src.watermark(8)
        await job.settle()
        assert list(out) == []
        src.watermark(9)  # the max timestamp of [0, 10)
        await job.settle()
        assert sorted(rows(out)) == [("a", 0, 10, 10), ("b", 0, 10, 3)]
        src.watermark(18)
        await job.settle()
        assert len(out) == 2
        src.watermark(19)
        await job.settle()
        assert rows(out)[2:] == [("a", 10, 20, 10)]
        src.end()
        await job.finish()
    assert len(out) == 3


async def test_processing_time_windows_fire_by_the_clock() -> None:
    clock = ManualClock(1_000)
    p = sl.Pipeline(batch_size=1, clock=clock)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0])
           .window(Tumbling(10, processing_time=True))
           .aggregate(sl.agg.collect_list(1)).process(Stamp())).collect()
    async with start(p, src) as job:
        src.add(("a", 1), timestamp=5)  # event time is ignored
        src.add(("b", 2))
        await job.settle()
        clock.advance(3)
        src.add(("a", 3))
        await job.settle()
        clock.advance(5)  # 1_008
        await job.settle()
        assert list(out) == []
        clock.advance(1)  # 1_009: the max timestamp of [1_000, 1_010)
        await job.settle()
        assert [(r.key, r.window.start, r.window.end, r.value, ts) for r, ts in out] == [
            ("a", 1_000, 1_010, [1, 3], 1_009), ("b", 1_000, 1_010, [2], 1_009)]
        clock.advance(1)  # 1_010
        src.add(("a", 4))
        await job.settle()
        clock.advance_to(1_018)
        await job.settle()
        assert len(out) == 2
        clock.advance_to(1_019)
        await job.settle()
        assert [(r.key, r.window.start, r.value) for r, _ in out[2:]] == [("a", 1_010, [4])]
        src.end()
        await job.finish()


async def test_continuous_processing_time_trigger_fires_every_interval_and_at_the_end() -> None:
    # Tumbling(10) event-time windows, fired by the clock every 4 ms (at multiples
    # of 4) while they hold records, and last at the window's max timestamp, 9;
    # the event-time end fires nothing more: the trigger is only the clock's.
    clock = ManualClock(1)
    p = sl.Pipeline(batch_size=1, clock=clock)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Tumbling(10))
           .trigger(ContinuousProcessingTimeTrigger(timedelta(milliseconds=4)))
           .aggregate(sl.agg.collect_list(1)).process(Stamp())).collect()
    async with start(p, src) as job:
        src.add(("a", 1), timestamp=2)
        await job.settle()
        clock.advance_to(3)
        await job.settle()
        assert list(out) == []
        clock.advance_to(4)
        await job.settle()
        src.add(("a", 2), timestamp=5)
        await job.settle()
        clock.advance_to(8)
        await job.settle()
        clock.advance_to(9)  # capped at the max timestamp, then no more
        await job.settle()
        clock.advance_to(40)
        await job.settle()
        assert [(r.window.start, r.value, ts) for r, ts in out] == [
            (0, [1], 9), (0, [1, 2], 9), (0, [1, 2], 9)]
        assert clock.next_due() is None
        src.end()
        await job.finish()
    assert len(out) == 3


async def test_continuous_processing_time_trigger_on_a_global_window_fires_forever() -> None:
    clock = ManualClock(0)
    p = sl.Pipeline(batch_size=1, clock=clock)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Global())
           .trigger(ContinuousProcessingTimeTrigger(10))
           .aggregate(sl.agg.sum(1))).collect()
    async with start(p, src) as job:
        src.add(("a", 1))
        src.add(("b", 5))
        await job.settle()
        clock.advance_to(10)
        await job.settle()
        src.add(("a", 2))
        await job.settle()
        clock.advance_to(20)
        await job.settle()
        clock.advance_to(30)
        await job.settle()
        assert [(r.key, r.value) for r in out] == [
            ("a", 1), ("b", 5), ("a", 3), ("b", 5), ("a", 3), ("b", 5)]
        src.end()
        await job.finish()


async def test_processing_time_session_windows_merge() -> None:
    clock = ManualClock(0)
    p = sl.Pipeline(batch_size=1, clock=clock)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0])
           .window(Session(10, processing_time=True))
           .aggregate(sl.agg.collect_list(1))).collect()
    async with start(p, src) as job:
        src.add(("a", 1))
        await job.settle()
        clock.advance(5)
        src.add(("a", 2))  # [5, 15) merges with [0, 10)
        await job.settle()
        clock.advance(4)  # 9: [0, 10) would have fired here
        await job.settle()
        assert list(out) == []
        clock.advance(5)  # 14
        await job.settle()
        assert rows(out) == [("a", 0, 15, [1, 2])]
        src.end()
        await job.finish()


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_count_trigger_fires_every_n_records_without_purging(mode: str, tmp_path: Path) -> None:
    records = [("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("a", 4, 4), ("a", 5, 5),
               ("a", 12, 100), ("a", 13, 200)]
    out = run(records, lambda k: k.window(Tumbling(10)).trigger(CountTrigger(2)).reduce(add),
              state_backend=backend_for(mode, tmp_path))
    # counts are per window, and a CountTrigger does not fire at the window's end
    assert [(r.window.start, r.value[2]) for r in out] == [(0, 3), (0, 10), (10, 300)]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_purging_trigger_purges_after_each_firing(mode: str, tmp_path: Path) -> None:
    records = [("a", t, t) for t in range(1, 6)]
    out = run(records, lambda k: k.window(Tumbling(10))
              .trigger(PurgingTrigger(CountTrigger(2))).reduce(add),
              state_backend=backend_for(mode, tmp_path))
    assert [r.value[2] for r in out] == [3, 7]


def test_purging_event_time_trigger_fires_late_records_alone() -> None:
    records = [("a", 1, 1), ("a", 2, 2), ("a", 11, 0), ("a", 5, 10), ("a", 6, 20)]
    out = run(records, lambda k: k.window(Tumbling(10))
              .trigger(PurgingTrigger(EventTimeTrigger())).allowed_lateness(100).reduce(add))
    assert [(r.window.start, r.value[2]) for r in out] == [(0, 3), (0, 10), (0, 20), (10, 0)]


async def test_continuous_event_time_trigger_fires_every_interval_and_at_the_end() -> None:
    p = sl.Pipeline(batch_size=1)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Tumbling(10))
           .trigger(ContinuousEventTimeTrigger(3)).aggregate(sl.agg.sum(1))
           .process(Stamp())).collect()
    async with start(p, src) as job:
        src.add(("a", 1), timestamp=1)
        src.add(("a", 2), timestamp=2)
        src.watermark(2)
        await job.settle()
        assert list(out) == []
        src.watermark(3)
        await job.settle()
        src.add(("a", 5), timestamp=5)
        src.watermark(6)
        await job.settle()
        src.add(("a", 8), timestamp=8)
        src.watermark(9)  # both the interval and the window's end: one firing
        await job.settle()
        src.watermark(12)
        src.end()
        await job.finish()
    assert [(r.window.start, r.value, ts) for r, ts in out] == [
        (0, 3, 9), (0, 8, 9), (0, 16, 9)]


def test_continuous_event_time_trigger_fires_while_no_records_come() -> None:
    out = run([("a", 1, 1)], lambda k: k.window(Tumbling(20))
              .trigger(ContinuousEventTimeTrigger(timedelta(milliseconds=5)))
              .aggregate(sl.agg.count()))
    # the end of input jumps the watermark to MAX: 5, 10, 15 and the end (19)
    assert rows(out) == [("a", 0, 20, 1)] * 4


class FirstPlusDelay(Trigger):
    """Fires and purges ``delay`` ms of event time after a window's first record
    (unless the window ends first); counts records in trigger state and notes
    the windows it was told to clear."""

    def __init__(self, delay: int) -> None:
        self.delay = delay
        self.cleared: list[tuple[Any, int]] = []

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        count = ctx.get_state("count", 0) + 1
        ctx.set_state("count", count)
        if count == 1:
            deadline = timestamp + self.delay
            ctx.set_state("deadline", deadline)
            ctx.register_event_time_timer(deadline)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if time != ctx.get_state("deadline"):
            return TriggerResult.CONTINUE
        ctx.set_state("count", None)
        ctx.set_state("deadline", None)
        return TriggerResult.FIRE_AND_PURGE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        deadline = ctx.get_state("deadline")
        self.cleared.append((window.start, deadline))
        if deadline is not None:
            ctx.delete_event_time_timer(deadline)
        ctx.set_state("count", None)
        ctx.set_state("deadline", None)


@pytest.mark.parametrize("mode", ["general", "sqlite"])
async def test_a_user_trigger_with_state_and_event_time_timers(mode: str, tmp_path: Path) -> None:
    trigger = FirstPlusDelay(5)
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Tumbling(100)).trigger(trigger)
           .aggregate(sl.agg.collect_list(1))).collect()
    async with start(p, src) as job:
        src.add(("a", 1), timestamp=1)
        src.add(("a", 2), timestamp=2)
        src.add(("b", 4), timestamp=4)
        src.watermark(5)
        await job.settle()
        assert rows(out) == []
        src.watermark(6)  # a's deadline
        await job.settle()
        assert rows(out) == [("a", 0, 100, [1, 2])]
        src.add(("a", 10), timestamp=10)  # a new first record: a new deadline, 15
        src.watermark(9)  # b's deadline
        await job.settle()
        assert rows(out)[1:] == [("b", 0, 100, [4])]
        src.add(("a", 96), timestamp=96)
        src.watermark(15)
        await job.settle()
        assert rows(out)[2:] == [("a", 0, 100, [10, 96])]
        src.add(("a", 98), timestamp=98)  # its deadline, 103, is after the window's end
        src.end()
        await job.finish()
    assert len(out) == 3  # [98] is dropped with the window, unfired
    # cleared at cleanup, with the pending deadline of a's last record
    assert sorted(trigger.cleared, key=str) == [(0, 103), (0, None)]


class EveryTicks(Trigger):
    """On a global window: fires and purges ``period`` ms of processing time after
    the first record since the last firing."""

    def __init__(self, period: int) -> None:
        self.period = period

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        if ctx.get_state("due") is None:
            due = ctx.current_processing_time() + self.period
            ctx.set_state("due", due)
            ctx.register_processing_time_timer(due)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any,
                           ctx: TriggerContext) -> TriggerResult:
        ctx.set_state("due", None)
        return TriggerResult.FIRE_AND_PURGE


async def test_a_user_trigger_with_processing_time_timers_on_a_global_window() -> None:
    clock = ManualClock(0)
    p = sl.Pipeline(batch_size=1, clock=clock)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Global()).trigger(EveryTicks(10))
           .aggregate(sl.agg.collect_list(1))).collect()
    async with start(p, src) as job:
        src.add(("a", 1))
        await job.settle()
        clock.advance(4)
        src.add(("a", 2))
        src.add(("b", 3))  # b's first: due at 14
        await job.settle()
        clock.advance(5)
        await job.settle()
        assert list(out) == []
        clock.advance(1)  # 10
        await job.settle()
        assert [(r.key, r.value) for r in out] == [("a", [1, 2])]
        src.add(("a", 4))  # due at 20
        await job.settle()
        clock.advance(4)  # 14
        await job.settle()
        assert [(r.key, r.value) for r in out[1:]] == [("b", [3])]
        clock.advance(6)  # 20
        await job.settle()
        assert [(r.key, r.value) for r in out[2:]] == [("a", [4])]
        src.end()
        await job.finish()


@pytest.mark.parametrize("make_window", [
    lambda k: k.window(Global()),
    lambda k: k.window(Global()).trigger(NeverTrigger()),
    lambda k: k.window(Tumbling(10)).trigger(NeverTrigger()),
    lambda k: k.window(Session(10)).trigger(NeverTrigger()),
])
def test_never_trigger_fires_nothing(make_window: Callable[[Any], Any]) -> None:
    records = [("a", t, t) for t in range(30)]
    assert run(records, lambda k: make_window(k).reduce(add)) == []


# -- evictors ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_count_evictor_before(mode: str, tmp_path: Path) -> None:
    records = [("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 4, 4)]
    backend = backend_for(mode, tmp_path)
    processed = run(records, lambda k: k.window(Tumbling(10)).evictor(CountEvictor(2))
                    .process(values_of), state_backend=backend)
    assert processed == [("a", 0, 10, [2, 3]), ("b", 0, 10, [4])]
    reduced = run(records, lambda k: k.window(Tumbling(10)).evictor(CountEvictor(2))
                  .reduce(add), state_backend=backend)
    assert [r.value[2] for r in reduced] == [5, 4]
    counted = run(records, lambda k: k.window(Tumbling(10)).evictor(CountEvictor(2))
                  .aggregate(sl.agg.count()), state_backend=backend)
    assert [r.value for r in counted] == [2, 1]


@pytest.mark.parametrize(("after", "expected"), [
    (False, [[1], [1, 2], [2, 3], [3, 4]]),
    (True, [[1], [1, 2], [1, 2, 3], [2, 3, 4]]),
])
def test_count_evictor_before_or_after(after: bool, expected: list[list[int]]) -> None:
    records = [("a", t, t) for t in range(1, 5)]
    out = run(records, lambda k: k.window(Global()).trigger(CountTrigger(1))
              .evictor(CountEvictor(2, after=after)).process(values_of))
    assert [v for *_, v in out] == expected


def test_time_evictor_before() -> None:
    records = [("a", 1, 1), ("a", 3, 3), ("a", 7, 7), ("a", 9, 9)]
    out = run(records, lambda k: k.window(Tumbling(100)).evictor(TimeEvictor(5))
              .process(values_of))
    assert out == [("a", 0, 100, [7, 9])]  # newer than 9 - 5


@pytest.mark.parametrize(("after", "expected"), [
    (False, [[1, 3], [7, 9], [7, 9, 10, 11]]),
    (True, [[1, 3], [1, 3, 7, 9], [7, 9, 10, 11]]),
])
def test_time_evictor_before_or_after(after: bool, expected: list[list[int]]) -> None:
    records = [("a", t, t) for t in (1, 3, 7, 9, 10, 11)]
    out = run(records, lambda k: k.window(Tumbling(100)).trigger(CountTrigger(2))
              .evictor(TimeEvictor(timedelta(milliseconds=5), after=after))
              .process(values_of))
    assert [v for *_, v in out] == expected


def test_time_evictor_on_count_windows_uses_the_records_timestamps() -> None:
    # Global and count windows are not event-time windows, but their records
    # keep their timestamps: Flink's TimeEvictor works on them too.
    records = [("a", 100, 1), ("a", 200, 2), ("a", 300, 3)]
    out = run(records, lambda k: k.window(Count(3)).evictor(TimeEvictor(150))
              .process(values_of))
    assert [v for *_, v in out] == [[2, 3]]


def test_a_user_trigger_on_a_global_window_sees_the_records_timestamps() -> None:
    seen: list[int] = []

    class Note(Trigger):
        def on_element(self, value: Any, timestamp: int, window: Any,
                       ctx: TriggerContext) -> TriggerResult:
            seen.append(timestamp)
            return TriggerResult.CONTINUE

    p = sl.Pipeline(batch_size=1, clock=ManualClock(123))
    keyed_records(p, [("a", 5, 1), ("a", 7, 2)]).window(Global()).trigger(Note()).reduce(add)
    p.run()
    assert seen == [5, 7]


class DropOddThenAll(Evictor):
    """Before: drops odd values. After: drops everything, so each firing sees
    only what came since the last one. Notes what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, list[tuple[Any, int]]]] = []

    def evict_before(self, elements: list[tuple[Any, int]], window: Any) -> list[tuple[Any, int]]:
        self.seen.append(("before", window, [(v[2], ts) for v, ts in elements]))
        return [e for e in elements if e[0][2] % 2 == 0]

    def evict_after(self, elements: list[tuple[Any, int]], window: Any) -> list[tuple[Any, int]]:
        self.seen.append(("after", window, [(v[2], ts) for v, ts in elements]))
        return []


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_a_user_evictor(mode: str, tmp_path: Path) -> None:
    evictor = DropOddThenAll()
    records = [("a", 10 * t, t) for t in range(1, 8)]
    out = run(records, lambda k: k.window(Tumbling(1_000)).trigger(CountTrigger(3))
              .evictor(evictor).process(values_of), state_backend=backend_for(mode, tmp_path))
    assert [v for *_, v in out] == [[2], [4, 6]]
    g = TimeWindow(0, 1_000)
    assert evictor.seen == [
        ("before", g, [(1, 10), (2, 20), (3, 30)]), ("after", g, [(2, 20)]),
        ("before", g, [(4, 40), (5, 50), (6, 60)]), ("after", g, [(4, 40), (6, 60)]),
    ]


# -- allowed lateness ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_allowed_lateness_refires_then_sends_to_the_late_side_output(
        mode: str, tmp_path: Path) -> None:
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    src = TestSource()
    keyed = p.from_source(src).key_by(lambda r: r[0])
    sums = (windowed(keyed, Tumbling(10), mode).allowed_lateness(5)
            .side_output_late_data("late").reduce(lambda a, b: (a[0], a[1] + b[1]), name="w"))
    out = sums.process(Stamp()).collect()
    late = sums.side_output("late").process(Stamp()).collect()
    async with start(p, src) as job:
        src.add(("a", 1), timestamp=1)
        src.add(("a", 2), timestamp=2)
        src.watermark(9)
        await job.settle()
        assert [(r.value[1], ts) for r, ts in out] == [(3, 9)]
        src.add(("a", 10), timestamp=5)  # late, within the lateness: fires again at once
        await job.settle()
        assert [(r.value[1], ts) for r, ts in out[1:]] == [(13, 9)]
        src.watermark(13)
        src.add(("a", 100), timestamp=6)  # 6 + 5 > 13: still in time
        await job.settle()
        assert [(r.window.start, r.value[1]) for r, _ in out[2:]] == [(0, 113)]
        src.watermark(14)  # the cleanup time of [0, 10)
        src.add(("a", 1_000), timestamp=7)
        src.add(("a", 7), timestamp=17)  # on time for [10, 20)
        await job.settle()
        assert late == [(("a", 1_000), 7)]
        assert len(out) == 3
        src.end()
        await job.finish()
    assert [(r.window.start, r.value[1]) for r, _ in out[3:]] == [(10, 7)]
    assert job.task.result().operators["w"] == {"dropped_late": 0}


@pytest.mark.parametrize("mode", MODES)
def test_late_records_without_a_side_output_are_counted(mode: str, tmp_path: Path) -> None:
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("a", 20, 20), ("a", 5, 5), ("b", 3, 3), ("a", 25, 25)]
    out = windowed(keyed_records(p, records), Tumbling(10), mode).reduce(add, name="w").collect()
    result = p.run()
    assert [(r.key, r.window.start, r.value[2]) for r in out] == [("a", 0, 1), ("a", 20, 45)]
    assert result.operators["w"] == {"dropped_late": 2}


@pytest.mark.parametrize("mode", MODES)
def test_late_records_go_to_the_side_output_with_their_timestamps(
        mode: str, tmp_path: Path) -> None:
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("a", 20, 20), ("a", 5, 5), ("b", 3, 3)]
    sums = windowed(keyed_records(p, records), Tumbling(10), mode).side_output_late_data(
        "late").reduce(add, name="w")
    sums.collect()
    late = sums.side_output("late").process(Stamp()).collect()
    result = p.run()
    assert late == [(("a", 5, 5), 5), (("b", 3, 3), 3)]
    assert result.operators["w"] == {"dropped_late": 0}


def test_a_sliding_record_late_for_only_some_windows_is_not_late() -> None:
    records = [("a", 1, 1), ("a", 12, 2), ("a", 7, 4)]  # wm 11: [0,10) gone, [5,15) open
    p = sl.Pipeline(batch_size=1)
    sums = keyed_records(p, records).window(Sliding(10, 5)).side_output_late_data(
        "late").reduce(add, name="w")
    out = sums.collect()
    late = sums.side_output("late").collect()
    p.run()
    assert [(r.window.start, r.value[2]) for r in out] == [(-5, 1), (0, 1), (5, 6), (10, 2)]
    assert late == []


async def test_session_windows_with_allowed_lateness() -> None:
    p = sl.Pipeline(batch_size=1)
    src = TestSource()
    sessions = (p.from_source(src).key_by(lambda r: r[0]).window(Session(10))
                .allowed_lateness(20).side_output_late_data("late")
                .aggregate(sl.agg.collect_list(1)))
    out = sessions.collect()
    late = sessions.side_output("late").collect()
    async with start(p, src) as job:
        src.add(("a", 0), timestamp=0)
        src.watermark(9)
        await job.settle()
        assert rows(out) == [("a", 0, 10, [0])]
        src.add(("a", 5), timestamp=5)  # extends the fired session to [0, 15): not due yet
        await job.settle()
        assert len(out) == 1
        src.watermark(14)
        await job.settle()
        assert rows(out)[1:] == [("a", 0, 15, [0, 5])]
        src.add(("a", 2), timestamp=2)  # inside [0, 15), which has fired: fires again
        await job.settle()
        assert rows(out)[2:] == [("a", 0, 15, [0, 5, 2])]
        src.watermark(34)  # the cleanup time of [0, 15)
        src.add(("a", 3), timestamp=3)
        await job.settle()
        assert late == [("a", 3)]
        src.end()
        await job.finish()
    assert len(out) == 3


# -- reduce, aggregate, process and window functions -----------------------------------


def one(key: Any, window: Any, value: Any) -> Any:
    return (key, window.start, value)


def several(key: Any, window: Any, value: Any) -> Any:
    return [(key, window.start, value), "second"]


def generated(key: Any, window: Any, value: Any) -> Iterator[Any]:
    yield (key, window.start, value)
    yield "second"


def nothing(key: Any, window: Any, value: Any) -> None:
    return None


WINDOW_FUNCTIONS = [
    (one, [("a", 0, 3), ("a", 10, 4)]),
    (several, [("a", 0, 3), "second", ("a", 10, 4), "second"]),
    (generated, [("a", 0, 3), "second", ("a", 10, 4), "second"]),
    (nothing, []),
]
WF_RECORDS = [("a", 1, 1), ("a", 2, 2), ("a", 14, 4)]


@pytest.mark.parametrize("mode", MODES)
def test_reduce_without_a_window_function_emits_window_results(mode: str, tmp_path: Path) -> None:
    out = run(WF_RECORDS, lambda k: windowed(k, Tumbling(10), mode).reduce(add),
              state_backend=backend_for(mode, tmp_path))
    assert out == [WindowResult("a", TimeWindow(0, 10), ("a", 1, 3)),
                   WindowResult("a", TimeWindow(10, 20), ("a", 14, 4))]


@pytest.mark.parametrize(("window_function", "expected"), WINDOW_FUNCTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_reduce_with_a_window_function(window_function: Any, expected: list[Any], mode: str,
                                       tmp_path: Path) -> None:
    out = run(WF_RECORDS, lambda k: windowed(k, Tumbling(10), mode)
              .reduce(lambda a, b: (a[0], a[1], a[2] + b[2]),
                      lambda k, w, v: window_function(k, w, v[2])),
              state_backend=backend_for(mode, tmp_path))
    assert out == expected


@pytest.mark.parametrize(("window_function", "expected"), WINDOW_FUNCTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_aggregate_with_and_without_a_window_function(window_function: Any,
                                                      expected: list[Any], mode: str,
                                                      tmp_path: Path) -> None:
    backend = backend_for(mode, tmp_path)
    out = run(WF_RECORDS, lambda k: windowed(k, Tumbling(10), mode)
              .aggregate(sl.agg.sum(2), window_function), state_backend=backend)
    assert out == expected
    plain = run(WF_RECORDS, lambda k: windowed(k, Tumbling(10), mode)
                .aggregate(sl.agg.sum(2)), state_backend=backend)
    assert rows(plain) == [("a", 0, 10, 3), ("a", 10, 20, 4)]


@pytest.mark.parametrize(("window_function", "expected"), WINDOW_FUNCTIONS)
@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_process_returns_one_value_a_list_a_generator_or_none(
        window_function: Any, expected: list[Any], mode: str, tmp_path: Path) -> None:
    out = run(WF_RECORDS, lambda k: k.window(Tumbling(10))
              .process(lambda k, w, vs: window_function(k, w, sum(v[2] for v in vs))),
              state_backend=backend_for(mode, tmp_path))
    assert out == expected


def test_process_sees_the_records_in_arrival_order_and_may_return_a_string() -> None:
    out = run([("a", 3, "x"), ("a", 1, "y"), ("a", 2, "z")],
              lambda k: k.window(Tumbling(10)).process(
                  lambda key, w, vs: "".join(v[2] for v in vs)),
              strategy=sl.WatermarkStrategy.bounded_out_of_orderness(10))
    assert out == ["xyz"]


# -- sl.agg --------------------------------------------------------------------------------


SALES = [
    {"k": "a", "ts": 1, "amount": 5, "name": "p"},
    {"k": "a", "ts": 2, "amount": 9, "name": "q"},
    {"k": "a", "ts": 3, "amount": 2, "name": "r"},
    {"k": "a", "ts": 4, "amount": 7, "name": "s"},
]


@pytest.mark.parametrize(("agg", "expected"), [
    (sl.agg.count(), 4),
    (sl.agg.sum("amount"), 23),
    (sl.agg.min("amount"), 2),
    (sl.agg.max("amount"), 9),
    (sl.agg.mean("amount"), 5.75),
    (sl.agg.first("name"), "p"),
    (sl.agg.last("name"), "s"),
    (sl.agg.collect_list("name"), ["p", "q", "r", "s"]),
    (sl.agg.top_k(2, "amount"), [9, 7]),
    (sl.agg.top_k(2, by=lambda s: s["amount"]), [SALES[1], SALES[3]]),
    (sl.agg.top_k(3, "name", by=lambda n: -ord(n)), ["p", "q", "r"]),
    (sl.agg.sum(lambda s: s["amount"] * 2), 46),
    (sl.agg.max(lambda s: (s["amount"] % 4, s["name"])), (3, "s")),
])
@pytest.mark.parametrize("mode", MODES)
def test_agg_functions(agg: sl.AggregateFunction[Any], expected: Any, mode: str,
                       tmp_path: Path) -> None:
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    keyed = (p.from_iterable(SALES).assign_timestamps(lambda s: s["ts"], MONO)
             .key_by(lambda s: s["k"]))
    out = windowed(keyed, Tumbling(10), mode).aggregate(agg).collect()
    p.run()
    assert rows(out) == [("a", 0, 10, expected)]


def test_agg_fields_by_index_and_the_record_itself() -> None:
    records = [("a", 1, 3), ("a", 2, 1), ("a", 3, 2)]
    assert rows(run(records, lambda k: k.window(Tumbling(10)).aggregate(sl.agg.min(2)))) == [
        ("a", 0, 10, 1)]
    assert rows(run(records, lambda k: k.window(Tumbling(10)).aggregate(sl.agg.max()))) == [
        ("a", 0, 10, ("a", 3, 2))]


# arrivals for key a: ts 20 (amount 1), ts 0 (5), then ts 10 (3) bridges [20,30) and [0,10)
SESSION_SALES = [("a", 20, 1, "x"), ("a", 0, 5, "y"), ("a", 10, 3, "z"), ("a", 50, 4, "w")]


@pytest.mark.parametrize(("agg", "expected"), [
    (sl.agg.count(), [3, 1]),
    (sl.agg.sum(2), [9, 4]),
    (sl.agg.min(2), [1, 4]),
    (sl.agg.max(2), [5, 4]),
    (sl.agg.mean(2), [3.0, 4.0]),
    # merged in window start order: [0,10) (y) before [20,30) (x), then z is added
    (sl.agg.first(3), ["y", "w"]),
    (sl.agg.last(3), ["z", "w"]),
    (sl.agg.collect_list(3), [["y", "x", "z"], ["w"]]),
    (sl.agg.top_k(2, 2), [[5, 3], [4]]),
    (sl.agg.top_k(1, by=lambda r: r[2]), [[("a", 0, 5, "y")], [("a", 50, 4, "w")]]),
])
@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_agg_functions_merge_on_session_windows(agg: sl.AggregateFunction[Any],
                                                expected: list[Any], mode: str,
                                                tmp_path: Path) -> None:
    out = run(SESSION_SALES, lambda k: k.window(Session(10)).aggregate(agg), batch_size=100,
              state_backend=backend_for(mode, tmp_path))
    assert [(r.window.start, r.window.end) for r in out] == [(0, 30), (50, 60)]
    assert [r.value for r in out] == expected


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_reduce_and_process_merge_on_session_windows(mode: str, tmp_path: Path) -> None:
    backend = backend_for(mode, tmp_path)
    reduced = run(SESSION_SALES, lambda k: k.window(Session(10))
                  .reduce(lambda a, b: (a[0], a[1], a[2], a[3] + b[3])),
                  batch_size=100, state_backend=backend)
    assert [r.value[3] for r in reduced] == ["yxz", "w"]
    processed = run(SESSION_SALES, lambda k: k.window(Session(10))
                    .process(lambda key, w, vs: "".join(v[3] for v in vs)),
                    batch_size=100, state_backend=backend)
    assert processed == ["yxz", "w"]


def test_empty_accumulators() -> None:
    mean = sl.agg.mean()
    assert mean.get_result(mean.create_accumulator()) is None
    assert mean.get_result(mean.merge(mean.create_accumulator(), mean.create_accumulator())) \
        is None
    assert mean.get_result(mean.merge(mean.create_accumulator(), mean.add(4, (0, 0)))) == 4
    for agg in (sl.agg.min(), sl.agg.max(), sl.agg.first(), sl.agg.last()):
        empty = agg.create_accumulator()
        assert agg.get_result(empty) is None
        full = agg.add(3, agg.create_accumulator())
        assert agg.get_result(agg.merge(empty, full)) == 3
        assert agg.get_result(agg.merge(full, empty)) == 3
    for agg in (sl.agg.collect_list(), sl.agg.top_k(3)):
        assert agg.get_result(agg.merge(agg.create_accumulator(), agg.create_accumulator())) \
            == []
    count, total = sl.agg.count(), sl.agg.sum()
    assert count.get_result(count.create_accumulator()) == 0
    assert total.get_result(total.merge(total.create_accumulator(), 5)) == 5


def test_mean_of_a_window_emptied_by_its_evictor() -> None:
    class EvictAll(Evictor):
        def evict_before(self, elements: list[Any], window: Any) -> list[Any]:
            return []

    out = run([("a", 1, 1)], lambda k: k.window(Tumbling(10)).evictor(EvictAll())
              .aggregate(sl.agg.mean(2)))
    # a reduce or aggregate window with nothing left after eviction emits nothing
    # (Flink would call the function on the empty contents: mean -> None)
    assert out == []


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "general"])
@pytest.mark.parametrize("assigner", [Tumbling(10), Sliding(10, 5), Session(10)])
def test_event_time_windows_need_timestamps(mode: str, assigner: Any) -> None:
    p = sl.Pipeline()
    windowed(p.from_iterable([1, 2]).key_by(lambda v: v), assigner, mode).reduce(
        lambda a, b: a, name="win").collect()
    with pytest.raises(sl.InvalidTimestampError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'win': event-time windows need timestamps; give the stream event time "
        "with assign_timestamps(...) upstream, or use processing-time windows")
    assert info.value.operator == "win"


class NoMerge(Trigger):
    def __repr__(self) -> str:
        return "NoMerge()"


@pytest.mark.parametrize(("trigger", "shown"), [
    (NoMerge(), "NoMerge()"),
    (PurgingTrigger(NoMerge()), "PurgingTrigger(NoMerge())"),
])
def test_a_trigger_that_cannot_merge_is_refused_on_session_windows(trigger: Trigger,
                                                                   shown: str) -> None:
    p = sl.Pipeline()
    ws = (p.from_iterable([1]).assign_timestamps(lambda v: v, MONO).key_by(lambda v: v)
          .window(Session(10)).trigger(trigger))
    with pytest.raises(sl.StreamletConfigError) as info:
        ws.reduce(lambda a, b: a, name="s")
    assert str(info.value) == (
        f"operator 's': {shown} cannot merge, so it cannot be used with merging windows "
        "(Session(gap=10))")


def test_merging_triggers_are_accepted_on_session_windows() -> None:
    p = sl.Pipeline()
    keyed = p.from_iterable([1]).assign_timestamps(lambda v: v, MONO).key_by(lambda v: v)
    for trigger in (EventTimeTrigger(), CountTrigger(2), PurgingTrigger(CountTrigger(2)),
                    NeverTrigger(), ContinuousEventTimeTrigger(5),
                    ContinuousProcessingTimeTrigger(5)):
        keyed.window(Session(10)).trigger(trigger).reduce(lambda a, b: a)


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_continuous_event_time_trigger_on_merging_sessions(mode: str, tmp_path: Path) -> None:
    # [1, 11) fires next at 5; the record at 8 grows it to [1, 18), which keeps
    # the earlier of the merged windows' next firings (5, as Flink's Min) and
    # fires every 5 ms from there, then at its max timestamp 17. The old
    # window's timers (5, 10) fire nothing.
    records = [("a", 1, 1), ("a", 8, 2), ("a", 20, 4)]
    out = run(records, lambda k: k.window(Session(10)).trigger(ContinuousEventTimeTrigger(5))
              .reduce(add).process(Stamp()), state_backend=backend_for(mode, tmp_path))
    assert [(r.window.start, r.window.end, r.value[2], ts) for r, ts in out] == [
        (1, 18, 3, 17), (1, 18, 3, 17), (1, 18, 3, 17), (1, 18, 3, 17),
        (20, 30, 4, 29), (20, 30, 4, 29)]


def test_count_trigger_and_continuous_state_merge_their_own_way() -> None:
    # Counts add up; the next firing of continuous triggers is the earlier one.
    assert CountTrigger(3).merge_state("count", 1, 1) == 2
    assert ContinuousEventTimeTrigger(5).merge_state("next", 10, 5) == 5
    assert ContinuousProcessingTimeTrigger(5).merge_state("next", 10, 15) == 10
    assert PurgingTrigger(ContinuousEventTimeTrigger(5)).merge_state("next", 10, 5) == 5


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Tumbling(0), "window size must be positive, got 0"),
    (lambda: Tumbling(-10), "window size must not be negative, got -10"),
    (lambda: Tumbling("10"), "window size must be a datetime.timedelta or int milliseconds"),
    (lambda: Tumbling(10, offset=-1), "window offset must not be negative, got -1"),
    (lambda: Tumbling(timedelta(0)), "window size must be positive"),
    (lambda: Sliding(10, 0), "window slide must be positive, got 0"),
    (lambda: Sliding(0, 5), "window size must be positive, got 0"),
    (lambda: Sliding(10, None), "window slide must be a datetime.timedelta or int"),
    (lambda: Session(0), "session gap must be positive, got 0"),
    (lambda: Session(-1), "session gap must not be negative, got -1"),
    (lambda: Session("1"), "session gap must be a datetime.timedelta or int milliseconds"),
    (lambda: Count(0), "Count(n) needs a positive int, got 0"),
    (lambda: Count(-1), "Count(n) needs a positive int, got -1"),
    (lambda: Count(2.0), "Count(n) needs a positive int, got 2.0"),
    (lambda: Count(True), "Count(n) needs a positive int, got True"),
    (lambda: Count(3, 0), "Count slide must be a positive int, got 0"),
    (lambda: Count(3, "1"), "Count slide must be a positive int, got '1'"),
    (lambda: CountTrigger(0), "CountTrigger needs a positive int, got 0"),
    (lambda: ContinuousEventTimeTrigger(0), "interval must be positive"),
    (lambda: ContinuousEventTimeTrigger(-1), "interval must not be negative"),
    (lambda: ContinuousProcessingTimeTrigger(0), "interval must be positive"),
    (lambda: CountEvictor(0), "CountEvictor needs a positive int, got 0"),
    (lambda: CountEvictor("2"), "CountEvictor needs a positive int, got '2'"),
    (lambda: TimeEvictor(-1), "TimeEvictor size must not be negative, got -1"),
    (lambda: TimeEvictor(0), "TimeEvictor size must be positive"),
    (lambda: sl.agg.top_k(0), "top_k"),
])
def test_bad_arguments_are_config_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(sl.StreamletConfigError, match=r"^" + re.escape(message)):
        make()


@pytest.mark.parametrize(("make", "message"), [
    (lambda k: k.window(Tumbling), "window() takes a window assigner such as "
     "sl.windows.Tumbling(60_000), not <class"),
    (lambda k: k.window(10), "window() takes a window assigner"),
    (lambda k: k.window(Tumbling(10)).trigger(CountTrigger),
     "trigger() takes a sl.windows.Trigger, not"),
    (lambda k: k.window(Tumbling(10)).evictor(3), "evictor() takes a sl.windows.Evictor, not 3"),
    (lambda k: k.window(Tumbling(10)).allowed_lateness(-1),
     "allowed_lateness must not be negative, got -1"),
    (lambda k: k.window(Tumbling(10)).allowed_lateness("5"),
     "allowed_lateness must be a datetime.timedelta or int milliseconds"),
    (lambda k: k.window(Tumbling(10)).side_output_late_data(""),
     "a side output tag is a non-empty str, not ''"),
    (lambda k: k.window(Tumbling(10)).reduce(5), "reduce() takes a function, not 5"),
    (lambda k: k.window(Tumbling(10)).aggregate(lambda a, b: a),
     "aggregate() takes a sl.AggregateFunction such as sl.agg.count(), not"),
    (lambda k: k.window(Tumbling(10)).aggregate(sl.agg.sum), "aggregate() takes a"),
    (lambda k: k.window(Tumbling(10)).process(None), "process() takes a function, not None"),
    (lambda k: k.window(Tumbling(10)).reduce(lambda a, b: a, on_error="skip"), "on_error"),
])
def test_bad_window_calls_are_config_errors(make: Callable[[Any], Any], message: str) -> None:
    p = sl.Pipeline()
    keyed = p.from_iterable([1]).key_by(lambda v: v)
    with pytest.raises(sl.StreamletConfigError, match=re.escape(message)):
        make(keyed)


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_reduce_names_the_operator(mode: str, tmp_path: Path) -> None:
    def boom(a: Record, b: Record) -> Record:
        if b[2] == 3:
            raise ValueError("no threes")
        return add(a, b)

    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("a", 2, 3)]
    windowed(keyed_records(p, records), Tumbling(10), mode).reduce(boom, name="sums").collect()
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'sums', key 'a': ValueError: no threes while processing record "
        f"('a', 2, 3). {FIX_HINT}")
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.operator == "sums"


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_reduce_sends_the_record_to_dead_letters(mode: str, tmp_path: Path) -> None:
    def boom(a: Record, b: Record) -> Record:
        if b[2] == 3:
            raise ValueError("no threes")
        return add(a, b)

    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("a", 2, 3), ("a", 4, 5), ("b", 5, 3), ("b", 6, 3)]
    sums = windowed(keyed_records(p, records), Tumbling(10), mode).reduce(
        boom, name="sums", on_error="dead_letter")
    out = sums.collect()
    dead = sums.dead_letters().collect()
    p.run()
    # b's first record is its accumulator, so only its second meets the function
    assert [(r.key, r.value[2]) for r in out] == [("a", 6), ("b", 3)]
    assert [(d.operator, d.value, d.key, d.timestamp, d.error_message) for d in dead] == [
        ("sums", ("a", 2, 3), "a", 2, "ValueError: no threes"),
        ("sums", ("b", 6, 3), "b", 6, "ValueError: no threes"),
    ]


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_a_dead_lettered_record_is_in_none_of_its_windows(mode: str, tmp_path: Path) -> None:
    # The record at 7 is in [5, 15) and [0, 10); the function fails only for the
    # second. A record that went to the dead letters was not processed: it
    # must not count in the first window either.
    def boom(a: Record, b: Record) -> Record:
        if b[2] == 100 and a[1] < 5:
            raise ValueError("not here")
        return add(a, b)

    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("a", 6, 2), ("b", 6, 0), ("a", 7, 100)]
    sums = keyed_records(p, records).window(Sliding(10, 5)).reduce(
        boom, name="sums", on_error="dead_letter")
    out = sums.collect()
    dead = sums.dead_letters().collect()
    p.run()
    assert [d.value for d in dead] == [("a", 7, 100)]
    assert sorted((r.key, r.window.start, r.value[2]) for r in out) == [
        ("a", -5, 1), ("a", 0, 3), ("a", 5, 2), ("b", 0, 0), ("b", 5, 0)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_size", [1, 64])
def test_a_dead_lettered_record_does_not_merge_the_sessions_it_bridges(
        mode: str, batch_size: int, tmp_path: Path) -> None:
    # Sessions [0, 10) and [14, 24) (gap 10); the record at 7 would merge them
    # into [0, 24), but its function fails: it changes nothing, in memory or in
    # SQLite, and both sessions fire as they were.
    def boom(a: Record, b: Record) -> Record:
        if b[2] == 100:
            raise ValueError("not this one")
        return add(a, b)

    p = sl.Pipeline(batch_size=batch_size, state_backend=backend_for(mode, tmp_path))
    records = [("a", 0, 1), ("a", 14, 2), ("a", 7, 100), ("a", 30, 4)]
    behind = sl.WatermarkStrategy.bounded_out_of_orderness(20)
    sums = windowed(keyed_records(p, records, behind), Session(10), mode).reduce(
        boom, name="sums", on_error="dead_letter")
    out = sums.collect()
    dead = sums.dead_letters().collect()
    p.run()
    assert [d.value for d in dead] == [("a", 7, 100)]
    assert [(r.window.start, r.window.end, r.value[2]) for r in out] == [
        (0, 10, 1), (14, 24, 2), (30, 40, 4)]


class Tags(sl.AggregateFunction[list[str]]):
    """Collects the records' tags in place; a window holding ``bad`` fails to fire."""

    def create_accumulator(self) -> list[str]:
        return []

    def add(self, value: Record, accumulator: list[str]) -> list[str]:
        accumulator.append(value[2])
        return accumulator

    def merge(self, a: list[str], b: list[str]) -> list[str]:
        return a + b

    def get_result(self, accumulator: list[str]) -> str:
        if "bad" in accumulator:
            raise ValueError("a bad window")
        return " ".join(accumulator)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("assigner", [Tumbling(10), Session(10)])
def test_a_late_record_whose_firing_fails_leaves_an_in_place_accumulator_as_it_was(
        mode: str, assigner: Any, tmp_path: Path) -> None:
    # "bad" comes late, within the lateness: its window fires at once and fails,
    # so the record is in none of its windows, although add() had appended it to
    # the accumulator; the next late record's firing must not show it.
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 0, "p"), ("a", 50, "q"), ("a", 5, "bad"), ("a", 6, "r")]
    tags = windowed(keyed_records(p, records), assigner, mode).allowed_lateness(100).aggregate(
        Tags(), name="tags", on_error="dead_letter")
    out = tags.collect()
    dead = tags.dead_letters().collect()
    p.run()
    assert [d.value for d in dead] == [("a", 5, "bad")]
    assert [(r.window.start, r.value) for r in out] == [(0, "p"), (0, "p r"), (50, "q")]


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_window_function_names_the_operator_and_key(mode: str,
                                                              tmp_path: Path) -> None:
    def explode(key: Any, window: Any, value: Any) -> Any:
        raise KeyError("gone")

    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    windowed(keyed_records(p, [("a", 1, 1)]), Tumbling(10), mode).reduce(
        add, explode, name="w").collect()
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'w', key 'a': KeyError: 'gone' "
                       r"while processing record .*window.*firing") as info:
        p.run()
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_window_function_goes_to_dead_letters_when_asked(mode: str,
                                                                   tmp_path: Path) -> None:
    def explode_on_b(key: Any, window: Any, value: Any) -> Any:
        if key == "b":
            raise KeyError("gone")
        return (key, value[2])

    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    records = [("a", 1, 1), ("b", 2, 2), ("a", 12, 3)]
    sums = windowed(keyed_records(p, records), Tumbling(10), mode).reduce(
        add, explode_on_b, name="w", on_error="dead_letter")
    out = sums.collect()
    dead = sums.dead_letters().collect()
    p.run()  # the job goes on, as on_error="dead_letter" promises
    assert out == [("a", 1), ("a", 3)]
    assert [(d.operator, d.key, d.error_message) for d in dead] == [("w", "b", "KeyError: 'gone'")]


def test_a_failing_gap_function_names_the_operator() -> None:
    def gap(record: Record) -> int:
        if record[2] < 0:
            raise ArithmeticError("negative")
        return record[2]

    with pytest.raises(sl.UserFunctionError, match=r"^operator 's', key 'a': ArithmeticError: "
                       r"negative while processing record \('a', 2, -1\)"):
        run([("a", 1, 5), ("a", 2, -1)],
            lambda k: k.window(Session(gap)).reduce(add, name="s"))


def test_a_gap_function_returning_zero_names_the_operator_and_record() -> None:
    with pytest.raises(sl.StreamletError) as info:
        run([("a", 1, 5), ("a", 2, 0)],
            lambda k: k.window(Session(lambda r: r[2])).reduce(add, name="s"))
    assert "the session gap function returned 0; it must return a positive" in str(info.value)
    assert "operator 's'" in str(info.value)
    assert "('a', 2, 0)" in str(info.value)


# -- session windows and purging -----------------------------------------------------------


async def test_a_purged_session_window_still_spans_its_session() -> None:
    # Flink keeps a purged session window in its merging window set: records
    # that arrive within the gap extend the same session.
    p = sl.Pipeline(batch_size=1)
    src = TestSource()
    out = (p.from_source(src).key_by(lambda r: r[0]).window(Session(10))
           .trigger(PurgingTrigger(CountTrigger(2)))
           .process(lambda k, w, vs: (w.start, w.end, [v[1] for v in vs]), name="w")).collect()
    async with start(p, src) as job:
        for ts in (0, 1, 2, 3):
            src.add(("a", ts), timestamp=ts)
        await job.settle()
        assert list(out) == [(0, 11, [0, 1]), (0, 13, [2, 3])]
        src.end()
        await job.finish()


async def test_trigger_state_of_purged_session_windows_is_dropped_at_cleanup() -> None:
    p = sl.Pipeline(batch_size=1)
    src = TestSource()
    (p.from_source(src).key_by(lambda r: r[0]).window(Session(10))
     .trigger(PurgingTrigger(CountTrigger(2))).reduce(lambda a, b: a, name="w")).collect()
    async with start(p, src) as job:
        for ts in (0, 1, 50, 51):
            src.add(("a", ts), timestamp=ts)
        src.watermark(1_000)
        await job.settle()
        (op,) = [o for o in job.job.operators.values() if o.name == "w"]
        assert dict(op.contents) == {}
        assert op.trigger_state == {}  # type: ignore[attr-defined]
        src.end()
        await job.finish()


@pytest.mark.parametrize("mode", ["general", "sqlite"])
def test_count_trigger_counts_merge_with_session_windows(mode: str, tmp_path: Path) -> None:
    # [0,10) and [20,30) hold one record each; 10 bridges them: 1 + 1 + 1 = 3
    records = [("a", 0, "x"), ("a", 20, "y"), ("a", 10, "z"), ("a", 50, "w")]
    out = run(records, lambda k: k.window(Session(10)).trigger(CountTrigger(3))
              .aggregate(sl.agg.collect_list(2)), batch_size=100,
              state_backend=backend_for(mode, tmp_path))
    assert rows(out) == [("a", 0, 30, ["x", "y", "z"])]


@pytest.mark.parametrize("mode", MODES)
def test_window_results_feed_later_event_time_windows(mode: str, tmp_path: Path) -> None:
    records = [("a", t, 1) for t in range(40)]
    p = sl.Pipeline(batch_size=1, state_backend=backend_for(mode, tmp_path))
    per_10 = windowed(keyed_records(p, records), Tumbling(10), mode).reduce(add, name="ten")
    per_20 = windowed(per_10.key_by(lambda r: r.key), Tumbling(20), mode).aggregate(
        sl.agg.collect_list(lambda r: (r.window.start, r.value[2])), name="twenty")
    out = per_20.collect()
    p.run()
    assert rows(out) == [("a", 0, 20, [(0, 10), (10, 10)]),
                         ("a", 20, 40, [(20, 10), (30, 10)])]


# -- state backends ------------------------------------------------------------------------


def _everything(k: sl.KeyedStream) -> list[sl.Stream]:
    return [
        k.window(Tumbling(10)).reduce(add),
        k.window(Sliding(10, 3)).aggregate(sl.agg.collect_list(2)),
        k.window(Session(4)).aggregate(sl.agg.mean(2)),
        k.window(Count(3, 2)).process(values_of),
        k.window(Tumbling(10)).allowed_lateness(7).evictor(CountEvictor(2)).process(values_of),
        k.window(Tumbling(10)).trigger(ContinuousEventTimeTrigger(4)).aggregate(
            sl.agg.top_k(2, 2)),
    ]


def test_sqlite_state_gives_the_same_results_as_memory(tmp_path: Path) -> None:
    records = [(f"k{i % 5}", (i * 7919) % 60 + i // 3, i) for i in range(120)]
    strategy = sl.WatermarkStrategy.bounded_out_of_orderness(6)

    def results(backend: Any, batch_size: int) -> list[list[Any]]:
        p = sl.Pipeline("same", batch_size=batch_size, state_backend=backend)
        outs = [s.collect() for s in _everything(keyed_records(p, records, strategy))]
        p.run()
        return [[(r.key, r.window, r.value) if isinstance(r, WindowResult) else r for r in out]
                for out in outs]

    for batch_size in (1, 7):
        memory = results(None, batch_size)
        assert all(memory)
        assert results(sl.SQLiteState(tmp_path / f"a{batch_size}"), batch_size) == memory
        assert results(sl.SQLiteState(tmp_path / f"b{batch_size}", cache_size=1),
                       batch_size) == memory


def test_a_second_run_on_the_same_sqlite_files_keeps_count_windows_whole(
        tmp_path: Path) -> None:
    # Window contents live in the backend but trigger state and timers do not;
    # a second run over the same files must start afresh or resume whole,
    # never mix the two (a Count(3) window of four records).
    backend = sl.SQLiteState(tmp_path)
    runs = []
    for _ in range(2):
        p = sl.Pipeline("twice", batch_size=1, state_backend=backend)
        out = (p.from_iterable([("a", v) for v in (1, 2, 3, 4)]).key_by(lambda r: r[0])
               .window(Count(3)).process(lambda k, w, vs: [[v[1] for v in vs]])).collect()
        p.run()
        runs.append(list(out))
    assert runs[0] == [[1, 2, 3]]
    assert runs[1] in ([[1, 2, 3]], [[4, 1, 2]])
