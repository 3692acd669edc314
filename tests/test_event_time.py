"""Event time: timestamps, watermark strategies, per-split watermarks, idleness,
and how watermarks travel through union and connect.

Watermarks are observed through a ``KeyedProcessFunction`` (``Probe``) that
notes ``ctx.timers.current_watermark()`` for every record, and through its
event-time timers, which fire exactly when a watermark at or past their time
arrives. With ``batch_size=1`` a source sends a watermark after every record,
so the watermark a record meets downstream is the one its predecessor made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import streamlet as sl
from streamlet.core.batch import Batch
from streamlet.core.mailbox import Mailbox
from streamlet.core.operator import OperatorContext, Output
from streamlet.core.source import Source, SourceReader
from streamlet.core.timestamps import AssignTimestampsOperator
from streamlet.state.snapshots import OperatorState, loads
from streamlet.testing import FunctionHarness, ManualClock, TestSource, start

MIN = -(2**63)
MAX = 2**63 - 1
BOUNDED_10 = sl.WatermarkStrategy.bounded_out_of_orderness(10)
MONOTONOUS = sl.WatermarkStrategy.for_monotonous_timestamps()




class Probe(sl.KeyedProcessFunction):
    """Notes (value, timestamp, watermark) per record; optionally registers an
    event-time timer per record, and notes (timer, key, watermark) when it fires."""

    def __init__(self, timer_offset: int | None = None) -> None:
        self.timer_offset = timer_offset
        self.seen: list[tuple[Any, int | None, int]] = []
        self.fired: list[tuple[int, Any, int]] = []

    def process(self, value: Any, ctx: sl.Context) -> Any:
        assert ctx.timers is not None
        ts = ctx.timestamp if ctx.has_timestamp else None
        self.seen.append((value, ts, ctx.timers.current_watermark()))
        if self.timer_offset is not None and ts is not None:
            ctx.timers.register_event_time(ts + self.timer_offset)
        return value

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        assert ctx.timers is not None
        self.fired.append((timestamp, ctx.key, ctx.timers.current_watermark()))

    def watermarks(self) -> list[int]:
        return [wm for _, _, wm in self.seen]


def probe_pipeline(records: list[Any], extractor: Any, strategy: sl.WatermarkStrategy,
                   probe: Probe, **options: Any) -> sl.Pipeline:
    p = sl.Pipeline("event-time", batch_size=1, **options)
    (p.from_iterable(records)
        .assign_timestamps(extractor, strategy, name="stamp")
        .key_by(lambda r: "k")
        .process(probe, name="probe"))
    return p


def _ts(record: dict[str, Any]) -> Any:
    return record["ts"]


# -- timestamps -----------------------------------------------------------------------


def test_int_timestamps_reach_the_function_and_its_outputs() -> None:
    probe = Probe()
    p = sl.Pipeline(batch_size=1)
    out = (p.from_iterable([{"ts": 5}, {"ts": 7}])
           .assign_timestamps(_ts, MONOTONOUS)
           .key_by(lambda r: "k")
           .process(probe))
    stamps = out.map(lambda r: r["ts"]).collect()
    p.run()
    assert [(v["ts"], ts) for v, ts, _ in probe.seen] == [(5, 5), (7, 7)]
    assert stamps == [5, 7]


@pytest.mark.parametrize("stamp", [
    datetime(2024, 1, 1, 1, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1))),
    datetime(2024, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC),
    datetime(2024, 1, 1, 0, 0, 0, 250_000),  # naive: UTC
], ids=["aware_plus_one_hour", "aware_utc", "naive"])
def test_datetime_timestamps_are_epoch_milliseconds(stamp: datetime) -> None:
    probe = Probe()
    p = probe_pipeline([{"at": stamp}], lambda r: r["at"], MONOTONOUS, probe)
    p.run()
    assert probe.seen == [({"at": stamp}, 1_704_067_200_250, MIN)]


@pytest.mark.parametrize(("bad", "shown"), [
    (1.5, "1.5 (float)"),
    ("100", "'100' (str)"),
    (None, "None (NoneType)"),
])
def test_wrong_timestamp_type_fails_naming_the_operator(bad: Any, shown: str) -> None:
    probe = Probe()
    records = [{"ts": 1}, {"ts": bad}, {"ts": 3}]
    p = probe_pipeline(records, _ts, MONOTONOUS, probe)
    with pytest.raises(sl.InvalidTimestampError) as info:
        p.run()
    assert str(info.value) == (
        f"operator 'stamp': the timestamp extractor returned {shown}; return int "
        "milliseconds since the epoch or a datetime")
    assert info.value.operator == "stamp"
    assert [v for v, _, _ in probe.seen] == [{"ts": 1}]  # nothing after the bad record


def test_wrong_timestamp_types_go_to_dead_letters() -> None:
    probe = Probe()
    p = sl.Pipeline(batch_size=4)
    records = [{"ts": 1}, {"ts": 2.5}, {"ts": "3"}, {"ts": 4}, {"ts": None}, {"ts": 6}]
    stamped = p.from_iterable(records).assign_timestamps(_ts, MONOTONOUS, name="stamp",
                                                          on_error="dead_letter")
    stamped.key_by(lambda r: "k").process(probe)
    dead = stamped.dead_letters().collect()
    p.run()
    assert [(v["ts"], ts) for v, ts, _ in probe.seen] == [(1, 1), (4, 4), (6, 6)]
    assert [d.value for d in dead] == [{"ts": 2.5}, {"ts": "3"}, {"ts": None}]
    assert all(d.operator == "stamp" for d in dead)
    assert all(isinstance(d.error, sl.InvalidTimestampError) for d in dead)
    assert dead[1].error_message == (
        "InvalidTimestampError: operator 'stamp': the timestamp extractor returned '3' "
        "(str); return int milliseconds since the epoch or a datetime")


def test_bool_is_not_a_timestamp() -> None:
    p = probe_pipeline([{"ts": True}], _ts, MONOTONOUS, Probe())
    with pytest.raises(sl.InvalidTimestampError, match=r"returned True \(bool\)"):
        p.run()


# -- generated watermarks -------------------------------------------------------------


def test_bounded_out_of_orderness_watermark_is_max_minus_bound_minus_one() -> None:
    probe = Probe()
    records = [{"ts": t} for t in (100, 95, 90, 89, 120, 111, 110, 130)]
    probe_pipeline(records, _ts, BOUNDED_10, probe).run()
    # after 100: 100 - 10 - 1 = 89; lower timestamps do not move it; after 120: 109
    assert probe.watermarks() == [MIN, 89, 89, 89, 89, 109, 109, 109]
    late = [ts for _, ts, wm in probe.seen if ts is not None and ts <= wm]
    # 90 is exactly the bound behind the max (100): on time; 89 is one more: late
    assert late == [89]


async def test_record_exactly_the_bound_behind_is_on_time_by_its_timer() -> None:
    """A timer at the watermark's exact value fires; one a millisecond later does not."""

    class Timers(sl.KeyedProcessFunction):
        def __init__(self) -> None:
            self.fired: list[tuple[int, int]] = []

        def process(self, value: Any, ctx: sl.Context) -> None:
            assert ctx.timers is not None
            if value["ts"] == 100:
                ctx.timers.register_event_time(89)
                ctx.timers.register_event_time(90)

        def on_timer(self, timestamp: int, ctx: sl.Context) -> None:
            assert ctx.timers is not None
            self.fired.append((timestamp, ctx.timers.current_watermark()))

    fn = Timers()
    source = TestSource()
    p = sl.Pipeline(batch_size=1)
    (p.from_source(source).assign_timestamps(_ts, BOUNDED_10)
        .key_by(lambda r: "k").process(fn))

    async with start(p, source) as job:
        source.add({"ts": 100})
        await job.settle()
        assert fn.fired == [(89, 89)]
        source.end()
        await job.finish()
    assert fn.fired == [(89, 89), (90, MAX)]


def test_monotonous_watermark_trails_by_one_and_never_goes_back() -> None:
    probe = Probe()
    records = [{"ts": t} for t in (10, 20, 20, 15, 30, 31)]
    probe_pipeline(records, _ts, MONOTONOUS, probe).run()
    assert probe.watermarks() == [MIN, 9, 19, 19, 19, 29]


def test_watermarks_never_go_backwards_over_shuffled_input() -> None:
    probe = Probe()
    stamps = [50, 3, 70, 10, 69, 71, 5, 100, 99, 40, 101]
    probe_pipeline([{"ts": t} for t in stamps], _ts, BOUNDED_10, probe).run()
    wms = probe.watermarks()
    assert wms == sorted(wms)
    highest = [max(stamps[: i + 1]) - 11 for i in range(len(stamps) - 1)]
    assert wms[1:] == highest


def test_watermarks_go_out_after_each_batch_not_each_record() -> None:
    probe = Probe()
    records = [{"ts": t} for t in (10, 20, 30, 40, 50)]
    p = sl.Pipeline(batch_size=2)
    (p.from_iterable(records).assign_timestamps(_ts, MONOTONOUS)
        .key_by(lambda r: "k").process(probe))
    p.run()
    assert probe.watermarks() == [MIN, MIN, 19, 19, 39]


def test_end_of_bounded_input_fires_every_event_time_timer() -> None:
    probe = Probe(timer_offset=10**12)  # far beyond any record's watermark
    records = [{"ts": 1, "k": "a"}, {"ts": 2, "k": "b"}, {"ts": 3, "k": "a"}]
    p = sl.Pipeline(batch_size=1)
    (p.from_iterable(records).assign_timestamps(_ts, MONOTONOUS)
        .key_by(lambda r: r["k"]).process(probe))
    p.run()
    assert probe.fired == [(10**12 + 1, "a", MAX), (10**12 + 2, "b", MAX),
                           (10**12 + 3, "a", MAX)]


def test_the_harness_passes_watermarks_on_after_firing_timers() -> None:
    probe = Probe(timer_offset=0)
    with FunctionHarness(probe, key=lambda r: r["k"]) as harness:
        harness.process({"k": "a"}, timestamp=5)
        harness.watermark(4)
        harness.watermark(4)  # not an advance: not passed on
        harness.watermark(5)
        harness.end_input()
        assert harness.watermarks == [4, 5, MAX]
    assert probe.fired == [(5, "a", 5)]


# -- custom generators ----------------------------------------------------------------


class Punctuated(sl.WatermarkGenerator):
    """A watermark only at records flagged as markers: the marker's own timestamp."""

    def on_event(self, value: Any, timestamp: int) -> int | None:
        return timestamp if value.get("marker") else None


class EveryThird(sl.WatermarkGenerator):
    """Periodic: after each batch, the highest timestamp seen rounded down to 100s."""

    def __init__(self) -> None:
        self.highest = MIN

    def on_event(self, value: Any, timestamp: int) -> int | None:
        self.highest = max(self.highest, timestamp)
        return None

    def on_periodic_emit(self) -> int | None:
        return None if self.highest == MIN else self.highest // 100 * 100


def test_punctuated_generator_sets_the_watermark_from_on_event() -> None:
    probe = Probe()
    records = [{"ts": 10}, {"ts": 20, "marker": True}, {"ts": 30}, {"ts": 25, "marker": True},
               {"ts": 40, "marker": True}, {"ts": 50}]
    probe_pipeline(records, _ts, sl.WatermarkStrategy.for_generator(Punctuated), probe).run()
    # a marker lower than the watermark (25 after 20... then 25 > 20) only ever raises it
    assert probe.watermarks() == [MIN, MIN, 20, 20, 25, 40]


def test_punctuated_watermark_lower_than_the_current_one_is_ignored() -> None:
    probe = Probe()
    records = [{"ts": 40, "marker": True}, {"ts": 30, "marker": True}, {"ts": 50}]
    probe_pipeline(records, _ts, sl.WatermarkStrategy.for_generator(Punctuated), probe).run()
    assert probe.watermarks() == [MIN, 40, 40]


def test_periodic_generator_is_asked_after_each_batch() -> None:
    probe = Probe()
    records = [{"ts": t} for t in (150, 199, 230, 120, 420)]
    probe_pipeline(records, _ts, sl.WatermarkStrategy.for_generator(EveryThird), probe).run()
    assert probe.watermarks() == [MIN, 100, 100, 200, 200]


def test_generator_factory_must_build_a_watermark_generator() -> None:
    def not_a_generator() -> Any:
        return object()

    p = probe_pipeline([{"ts": 1}], _ts, sl.WatermarkStrategy.for_generator(not_a_generator),
                       Probe())
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^the watermark generator factory returned <object object at "
                             r"0x[0-9a-f]+>, not a WatermarkGenerator$"):
        p.run()


def test_strategy_and_idleness_are_checked_when_built() -> None:
    with pytest.raises(sl.StreamletConfigError, match=r"^idleness must be positive$"):
        sl.WatermarkStrategy(idleness_ms=0)
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^for_generator\(\) takes a factory of WatermarkGenerator$"):
        sl.WatermarkStrategy.for_generator(Punctuated())  # type: ignore[arg-type]
    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^assign_timestamps\(\) takes a sl.WatermarkStrategy, not 10$"):
        p.from_iterable([1]).assign_timestamps(lambda r: r, 10)  # type: ignore[arg-type]


# -- per-split watermarks -------------------------------------------------------------


class ScriptedSource(Source):
    """A bounded source that returns the given batches, each naming its split."""

    def __init__(self, batches: list[tuple[str, list[Any]]]) -> None:
        self.batches = batches

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return _ScriptedReader(name, [Batch(values, None, None, split)
                                      for split, values in self.batches])


class _ScriptedReader(SourceReader):
    def __init__(self, name: str, batches: list[Batch]) -> None:
        self.name = name
        self.batches = batches

    async def next_batch(self) -> Batch | None:
        return self.batches.pop(0) if self.batches else None


def test_watermark_is_the_minimum_over_splits() -> None:
    probe = Probe()
    source = ScriptedSource([
        ("p1", [{"ts": 10}]),
        ("p0", [{"ts": 100}]),
        ("p0", [{"ts": 200}]),
        ("p1", [{"ts": 20}]),  # the slow partition holds the watermark back
        ("p1", [{"ts": 300}]),
        ("p0", [{"ts": 400}]),
        ("p0", [{"ts": 500}, {"ts": 600}]),
    ])
    p = sl.Pipeline(batch_size=1)
    (p.from_source(source).assign_timestamps(_ts, MONOTONOUS)
        .key_by(lambda r: "k").process(probe))
    p.run()
    assert probe.watermarks() == [MIN, 9, 9, 9, 19, 199, 299, 299]


def test_a_split_behind_does_not_pull_the_watermark_back() -> None:
    probe = Probe()
    source = ScriptedSource([("p0", [{"ts": 100}]), ("p1", [{"ts": 5}]),
                             ("p1", [{"ts": 200}]), ("p0", [{"ts": 150}])])
    p = sl.Pipeline(batch_size=1)
    (p.from_source(source).assign_timestamps(_ts, MONOTONOUS)
        .key_by(lambda r: "k").process(probe))
    p.run()
    # p1 appears after p0 moved the watermark to 99: min(99, 4) would go back
    assert probe.watermarks() == [MIN, 99, 99, 99]


@pytest.mark.parametrize("multiply", [1, 2], ids=["as_read", "cut_at_the_channel"])
def test_splits_survive_a_channel_before_assign_timestamps(multiply: int) -> None:
    """A flat_map that doubles a batch makes it too big for the channel into the
    union, which cuts it in two; both halves must still name their split."""
    probe = Probe()
    source = ScriptedSource([("slow", [{"ts": 10}, {"ts": 11}]),
                             ("fast", [{"ts": 1000}, {"ts": 1001}]),
                             ("fast", [{"ts": 2000}, {"ts": 2001}]),
                             ("fast", [{"ts": 3000}])])
    p = sl.Pipeline(batch_size=2)
    (p.from_source(source)
        .flat_map(lambda r: [r] * multiply)
        .union(p.from_iterable([]))
        .assign_timestamps(_ts, MONOTONOUS)
        .key_by(lambda r: "k")
        .process(probe))
    p.run()
    assert probe.seen[-1] == ({"ts": 3000}, 3000, 10)  # the slow split holds it at 11 - 1


class SplitSource(TestSource):
    """A TestSource whose records each name a split: ``add_to(split, value)``."""

    __test__ = False

    def add_to(self, split: str, value: Any) -> None:
        self.add((split, value))

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return _SplitReader(name, super().create_reader(name, 1))


class _SplitReader(SourceReader):
    def __init__(self, name: str, inner: SourceReader) -> None:
        self.name = name
        self.inner = inner

    async def next_batch(self) -> Any:
        batch = await self.inner.next_batch()
        if not isinstance(batch, Batch):
            return batch
        ((split, value),) = batch.values
        return Batch([value], None, None, split)


async def test_idle_split_stops_holding_the_watermark_back() -> None:
    clock = ManualClock(0)
    probe = Probe()
    source = SplitSource()
    p = sl.Pipeline(batch_size=1, clock=clock)
    strategy = MONOTONOUS.with_idleness(1000)
    (p.from_source(source).assign_timestamps(_ts, strategy)
        .key_by(lambda r: "k").process(probe))
    async with start(p, source) as job:
        source.add_to("p1", {"ts": 50})
        source.add_to("p0", {"ts": 100})
        await job.settle()
        clock.advance(500)
        source.add_to("p0", {"ts": 200})
        source.add_to("p0", {"ts": 300})
        await job.settle()
        assert probe.watermarks() == [MIN, 49, 49, 49]  # p1 holds it back
        clock.advance(499)  # p1 silent for 999 ms: not idle yet
        await job.settle()
        source.add_to("p0", {"ts": 301})
        await job.settle()
        assert probe.watermarks()[-1] == 49
        clock.advance(1)  # p1 silent for 1000 ms: idle, p0 (active at 500) is not
        await job.settle()
        source.add_to("p0", {"ts": 302})
        await job.settle()
        assert probe.watermarks()[-1] == 300
        # p1 comes back behind: active again, but the watermark never goes back
        source.add_to("p1", {"ts": 60})
        source.add_to("p0", {"ts": 500})
        source.add_to("p1", {"ts": 1000})
        source.add_to("p0", {"ts": 600})
        await job.settle()
        assert probe.watermarks()[-4:] == [301, 301, 301, 499]
        source.end()
        await job.finish()
    wms = probe.watermarks()
    assert wms == sorted(wms)


async def test_idle_source_in_a_union_stops_holding_the_watermark_back() -> None:
    clock = ManualClock(0)
    probe = Probe(timer_offset=0)
    busy, quiet = TestSource(), TestSource()
    p = sl.Pipeline(batch_size=1, clock=clock)
    strategy = MONOTONOUS.with_idleness(1000)
    a = p.from_source(busy, name="busy").assign_timestamps(_ts, strategy)
    b = p.from_source(quiet, name="quiet").assign_timestamps(_ts, strategy)
    a.union(b).key_by(lambda r: "k").process(probe)
    async with start(p, busy, quiet) as job:
        busy.add({"ts": 100})
        busy.add({"ts": 200})
        await job.settle()
        assert probe.watermarks() == [MIN, MIN]  # the quiet source is not idle yet
        clock.advance(600)
        busy.add({"ts": 300})
        await job.settle()
        assert probe.fired == []
        clock.advance(600)  # quiet: no record for 1200 ms; busy: for 600 ms
        await job.settle()
        assert probe.fired == [(100, "k", 299), (200, "k", 299)]
        busy.add({"ts": 400})
        await job.settle()
        assert probe.watermarks() == [MIN, MIN, MIN, 299]
        assert probe.fired[-1] == (300, "k", 399)
        busy.end()
        quiet.end()
        await job.finish()
    assert probe.fired[-1] == (400, "k", MAX)


async def test_union_watermark_is_the_minimum_of_its_inputs() -> None:
    probe = Probe(timer_offset=0)
    fast, slow = TestSource(), TestSource()
    p = sl.Pipeline(batch_size=1)
    a = p.from_source(fast, name="fast").assign_timestamps(_ts, MONOTONOUS)
    b = p.from_source(slow, name="slow").assign_timestamps(_ts, MONOTONOUS)
    a.union(b).key_by(lambda r: "k").process(probe)
    async with start(p, fast, slow) as job:
        fast.add({"ts": 1000})
        slow.add({"ts": 100})
        await job.settle()
        fast.add({"ts": 2000})
        await job.settle()
        assert [t for t, _, _ in probe.fired] == []  # neither 100 (wm 99) nor 1000
        slow.add({"ts": 1500})
        await job.settle()
        assert probe.fired == [(100, "k", 1499), (1000, "k", 1499)]
        fast.end()  # an input that ended no longer holds the watermark back
        await job.settle()
        slow.add({"ts": 2500})
        await job.settle()
        assert probe.fired[-2:] == [(1500, "k", 2499), (2000, "k", 2499)]
        slow.end()
        await job.finish()
    assert probe.fired[-1] == (2500, "k", MAX)


class Control(sl.CoProcessFunction):
    """Notes the watermark at every element of either input, and fires a timer
    at each data element's timestamp."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []
        self.fired: list[tuple[int, int]] = []

    def process_element1(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        self.seen.append(("control", ctx.timestamp, ctx.timers.current_watermark()))

    def process_element2(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        self.seen.append(("data", ctx.timestamp, ctx.timers.current_watermark()))
        ctx.timers.register_event_time(ctx.timestamp)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        self.fired.append((timestamp, ctx.timers.current_watermark()))


async def test_connect_with_an_idle_input_follows_the_other_and_never_goes_back() -> None:
    clock = ManualClock(0)
    fn = Control()
    control, data = TestSource(), TestSource()
    p = sl.Pipeline(batch_size=1, clock=clock)
    strategy = MONOTONOUS.with_idleness(1000)
    first = (p.from_source(control, name="control").assign_timestamps(_ts, strategy)
             .key_by(lambda r: "k"))
    second = (p.from_source(data, name="data").assign_timestamps(_ts, strategy)
              .key_by(lambda r: "k"))
    first.connect(second).process(fn)
    async with start(p, control, data) as job:
        control.add({"ts": 100})  # the control stream is slow, then goes quiet
        data.add({"ts": 1000})
        await job.settle()
        clock.advance(600)
        data.add({"ts": 2000})
        await job.settle()
        assert fn.fired == []  # watermark 99: held back by the control stream
        assert fn.seen[-1] == ("data", 2000, 99)
        clock.advance(600)  # control: silent 1200 ms, idle; data: active at 600
        await job.settle()
        assert fn.fired == [(1000, 1999)]
        control.add({"ts": 150})  # back, but far behind: the watermark stays
        await job.settle()
        assert fn.seen[-1] == ("control", 150, 1999)
        data.add({"ts": 3000})
        await job.settle()
        assert fn.seen[-1] == ("data", 3000, 1999)
        assert fn.fired == [(1000, 1999)]  # min(149, 2999): no advance
        control.end()
        await job.settle()
        data.add({"ts": 4000})
        await job.settle()
        assert fn.fired == [(1000, 1999), (2000, 2999), (3000, 3999)]
        data.end()
        await job.finish()
    assert fn.fired[-1] == (4000, MAX)


async def test_connect_with_an_input_idle_from_the_start() -> None:
    clock = ManualClock(0)
    fn = Control()
    control, data = TestSource(), TestSource()
    p = sl.Pipeline(batch_size=1, clock=clock)
    strategy = MONOTONOUS.with_idleness(1000)
    first = (p.from_source(control, name="control").assign_timestamps(_ts, strategy)
             .key_by(lambda r: "k"))
    second = (p.from_source(data, name="data").assign_timestamps(_ts, strategy)
              .key_by(lambda r: "k"))
    first.connect(second).process(fn)
    async with start(p, control, data) as job:
        data.add({"ts": 100})
        await job.settle()
        clock.advance(999)
        data.add({"ts": 200})
        await job.settle()
        assert fn.fired == []
        clock.advance(1)  # control has never had a record: idle
        await job.settle()
        assert fn.fired == [(100, 199)]
        control.end()
        data.end()
        await job.finish()
    assert fn.fired == [(100, 199), (200, MAX)]


# -- records without timestamps -------------------------------------------------------


def test_records_without_timestamps_flow_in_processing_time() -> None:
    clock = ManualClock(1_000)

    class Stamp(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            assert ctx.timers is not None
            return (value, ctx.has_timestamp, ctx.timers.current_processing_time())

    p = sl.Pipeline(clock=clock)
    out = p.from_iterable(["a", "b"]).key_by(lambda v: v).process(Stamp()).collect()
    p.run()
    assert out == [("a", False, 1_000), ("b", False, 1_000)]


def test_reading_the_timestamp_of_a_record_without_one_fails_clearly() -> None:
    class NeedsTime(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            return ctx.timestamp

    p = sl.Pipeline()
    p.from_iterable(["a"]).key_by(lambda v: v).process(NeedsTime(), name="needs_time").collect()
    with pytest.raises(sl.InvalidTimestampError) as info:
        p.run()
    message = str(info.value)
    assert message.endswith(
        "this record has no timestamp; give the stream event time with "
        "assign_timestamps(...) upstream, or use processing time")
    # the error should say which operator met the record
    assert message.startswith("operator 'needs_time': "), message


def test_timestamp_of_a_record_without_one_in_the_harness() -> None:
    class NeedsTime(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            return ctx.timestamp

    with FunctionHarness(NeedsTime(), key=lambda v: v) as harness:
        harness.process("a", timestamp=7)
        assert harness.output_with_timestamps == [(7, 7)]
        with pytest.raises(sl.InvalidTimestampError, match="this record has no timestamp"):
            harness.process("b")


# -- rescaling (workers) -------------------------------------------------------------


class _Watermarks(Output):
    def __init__(self) -> None:
        self.watermarks: list[int] = []

    async def push(self, batch: Batch) -> None:
        return None

    async def watermark(self, timestamp: int) -> None:
        self.watermarks.append(timestamp)

    async def status(self, idle: bool) -> None:
        return None

    async def end(self) -> None:
        return None


def _assigner(clock: ManualClock) -> tuple[AssignTimestampsOperator, _Watermarks]:
    op = AssignTimestampsOperator(
        "ts", None, sl.WatermarkStrategy.bounded_out_of_orderness(timedelta(0)), "fail")
    out = _Watermarks()
    op.wire(out, {})
    op.open(OperatorContext(lambda coro, name: None, 128, clock, Mailbox()))
    return op, out


async def test_split_watermarks_follow_their_splits_to_another_number_of_workers() -> None:
    """Two workers read splits {0, 1} and {2, 3}; one worker restores both parts.
    Its watermark resumes from the slower worker's; a split it reads again
    resumes its own watermark; a split it never reads does not hold it back."""
    clock = ManualClock()
    first, second = _assigner(clock)[0], _assigner(clock)[0]
    for op, splits in ((first, {0: 100, 1: 300}), (second, {2: 500, 3: 700})):
        for split, ts in splits.items():
            await op.process(Batch([ts], None, [ts], split))
    metas = [op.snapshot_state(1, 128).meta for op in (first, second)]
    assert [loads(m)[0] for m in metas] == [99, 499]  # max timestamp - 1

    merged, out = _assigner(clock)
    merged.restore_state(OperatorState(merged.rescale_meta(metas, 0, 1), {}), 128)
    for split in (0, 2):  # the reader announces the splits it reads
        await merged.process(Batch([], None, [], split))
    assert out.watermarks == [] and merged._watermark == 99
    await merged.process(Batch([900], None, [900], 0))  # split 0: 99 -> 899
    assert out.watermarks == [499]  # min over the splits read here (0, 2); 1, 3 absent
    again = loads(merged.snapshot_state(2, 128).meta)
    assert set(again[1]) == {0, 2} and set(again[2]) == {1, 3}  # unread ones kept dormant
