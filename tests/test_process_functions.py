"""Process functions: emitting, timers in event and processing time, keyed state
with TTL, side outputs, connect, and how their mistakes and failures surface.

Most behaviour is pinned with ``FunctionHarness`` (one function, driven by
hand); each feature is also run once in a real pipeline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

import streamlet as sl
from streamlet.testing import FunctionHarness, ManualClock, TestSource, start

MAX = 2**63 - 1
FIX_HINT = ("Fix the function, or pass on_error='dead_letter' to the operator to route "
            "such records to its dead-letter output and keep going.")
STATE_ACCESS = re.escape(
    "was used outside a keyed context: keyed state is scoped to the current key, so it can "
    "only be used inside process() or on_timer() of a function running on a keyed stream "
    "(after key_by)")




def first(record: tuple[Any, ...]) -> Any:
    return record[0]


# -- emitting -------------------------------------------------------------------------


class Yields(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Iterator[Any]:
        yield value
        yield value * 10


class Returns(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        return value if value % 2 else None  # None emits nothing


class Emits(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> None:
        ctx.emit(value)
        ctx.emit(-value)


class Mixed(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        ctx.emit("first")
        return value  # after what ctx.emit sent


class AsyncReturns(sl.KeyedProcessFunction):
    async def process(self, value: Any, ctx: sl.Context) -> Any:
        await asyncio.sleep(0)
        return (ctx.key, value)


class AsyncYields(sl.KeyedProcessFunction):
    async def process(self, value: Any, ctx: sl.Context) -> Any:
        await asyncio.sleep(0)
        yield value
        await asyncio.sleep(0)
        yield ctx.key


@pytest.mark.parametrize(("function", "expected"), [
    (Yields, [1, 10, 2, 20, 3, 30]),
    (Returns, [1, 3]),
    (Emits, [1, -1, 2, -2, 3, -3]),
    (Mixed, ["first", 1, "first", 2, "first", 3]),
    (AsyncReturns, [("odd", 1), ("even", 2), ("odd", 3)]),
    (AsyncYields, [1, "odd", 2, "even", 3, "odd"]),
])
def test_ways_to_emit(function: type[sl.KeyedProcessFunction], expected: list[Any]) -> None:
    def parity(v: int) -> str:
        return "odd" if v % 2 else "even"

    with FunctionHarness(function(), key=parity) as harness:
        for v in (1, 2, 3):
            harness.process(v, timestamp=v * 100)
        assert harness.output == expected
    p = sl.Pipeline(batch_size=2)
    out = p.from_iterable([1, 2, 3]).key_by(parity).process(function()).collect()
    p.run()
    assert out == expected


def test_outputs_carry_the_record_timestamp() -> None:
    with FunctionHarness(Yields(), key=lambda v: "k") as harness:
        harness.process(1, timestamp=5)
        harness.process(2)
        assert harness.output_with_timestamps == [(1, 5), (10, 5), (2, None), (20, None)]


# -- event-time timers ----------------------------------------------------------------


class Session(sl.KeyedProcessFunction):
    """Counts a key's records; reports the count when event time passes ts + 10."""

    count = sl.ValueState("count", default=0)

    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        self.count.update(self.count.value() + 1)
        ctx.timers.register_event_time(ctx.timestamp + 10)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        assert ctx.timers is not None
        return (ctx.key, timestamp, self.count.value(), ctx.time_domain,
                ctx.timers.current_watermark(), ctx.timestamp)


def test_event_time_timers_fire_in_order_with_their_key_and_state() -> None:
    with FunctionHarness(Session(), key=first) as harness:
        harness.process(("a", 5), timestamp=5)  # timer a@15
        harness.process(("b", 3), timestamp=3)  # timer b@13
        harness.process(("a", 1), timestamp=1)  # timer a@11
        assert harness.timers() == {"event_time": [("a", 11), ("b", 13), ("a", 15)],
                                    "processing_time": []}
        harness.watermark(10)
        assert harness.output == []
        harness.watermark(14)
        assert harness.output_with_timestamps == [
            (("a", 11, 2, "event_time", 14, 11), 11),
            (("b", 13, 1, "event_time", 14, 13), 13),
        ]
        harness.clear_output()
        harness.watermark(15)
        assert harness.output_with_timestamps == [(("a", 15, 2, "event_time", 15, 15), 15)]
        assert harness.timers()["event_time"] == []
        harness.end_input()
        assert harness.output_with_timestamps == [(("a", 15, 2, "event_time", 15, 15), 15)]
        assert harness.watermarks == [10, 14, 15, MAX]


def test_event_time_timers_fire_before_the_watermark_goes_on() -> None:
    """Downstream, a timer's output arrives before the watermark that fired it."""

    class Downstream(sl.KeyedProcessFunction):
        def __init__(self) -> None:
            self.seen: list[tuple[Any, int, int]] = []

        def process(self, value: Any, ctx: sl.Context) -> None:
            assert ctx.timers is not None
            self.seen.append((value[0], ctx.timestamp, ctx.timers.current_watermark()))

    downstream = Downstream()
    p = sl.Pipeline(batch_size=1)
    (p.from_iterable([("a", 5), ("b", 3), ("a", 30), ("b", 40)])
        .assign_timestamps(lambda r: r[1], sl.WatermarkStrategy.for_monotonous_timestamps())
        .key_by(first)
        .process(Session())
        .key_by(lambda r: "all")
        .process(downstream))
    p.run()
    # b@13 and a@15 fire at watermark 29 (after ("a", 30)) and reach downstream while
    # it is still at 4; a@40 and b@50 fire at the end, before MAX, so downstream is at 39
    assert downstream.seen == [("b", 13, 4), ("a", 15, 4), ("a", 40, 39), ("b", 50, 39)]


class Twice(sl.KeyedProcessFunction):
    def __init__(self) -> None:
        self.fired: list[tuple[Any, int, str | None]] = []

    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        ctx.timers.register_event_time(100)
        ctx.timers.register_event_time(100)
        ctx.timers.register_processing_time(50)
        ctx.timers.register_processing_time(50)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> None:
        self.fired.append((ctx.key, timestamp, ctx.time_domain))


def test_timers_are_deduplicated_per_key_and_time() -> None:
    fn = Twice()
    with FunctionHarness(fn, key=lambda v: v, clock=ManualClock(0)) as harness:
        harness.process("a")
        harness.process("a")
        harness.process("b")
        assert harness.timers() == {
            "event_time": [("a", 100), ("b", 100)],
            "processing_time": [("a", 50), ("b", 50)],
        }
        harness.advance_processing_time(50)
        harness.watermark(100)
        harness.watermark(200)
        harness.advance_processing_time(100)
    assert fn.fired == [("a", 50, "processing_time"), ("b", 50, "processing_time"),
                        ("a", 100, "event_time"), ("b", 100, "event_time")]


class Deletes(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        op, domain, when = value
        if domain == "event":
            if op == "set":
                ctx.timers.register_event_time(when)
            else:
                ctx.timers.delete_event_time(when)
        elif op == "set":
            ctx.timers.register_processing_time(when)
        else:
            ctx.timers.delete_processing_time(when)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        return (ctx.time_domain, timestamp)


def test_deleted_timers_do_not_fire() -> None:
    with FunctionHarness(Deletes(), key=lambda v: "k", clock=ManualClock(0)) as harness:
        for record in [("set", "event", 10), ("set", "event", 20), ("del", "event", 10),
                       ("set", "proc", 30), ("set", "proc", 40), ("del", "proc", 30),
                       ("del", "event", 999)]:  # deleting what is not there is harmless
            harness.process(record)
        assert harness.timers() == {"event_time": [("k", 20)],
                                    "processing_time": [("k", 40)]}
        harness.watermark(100)
        harness.advance_processing_time(100)
        assert harness.output_with_timestamps == [(("event_time", 20), 20),
                                                  (("processing_time", 40), 40)]


def test_a_timer_deleted_then_registered_again_fires_once() -> None:
    with FunctionHarness(Deletes(), key=lambda v: "k") as harness:
        for record in [("set", "event", 10), ("del", "event", 10), ("set", "event", 10)]:
            harness.process(record)
        harness.end_input()
        assert harness.output == [("event_time", 10)]


def test_timer_time_must_be_int_milliseconds() -> None:
    class FloatTimer(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> None:
            assert ctx.timers is not None
            ctx.timers.register_event_time(1.5)  # type: ignore[arg-type]

    with FunctionHarness(FloatTimer(), key=lambda v: v, name="float_timer") as harness, \
            pytest.raises(sl.InvalidTimestampError) as info:
        harness.process("a")
    assert str(info.value) == (
        "operator 'float_timer': a timer time must be int milliseconds, not 1.5")


# -- processing-time timers -----------------------------------------------------------


class Reminder(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        ctx.timers.register_processing_time(ctx.timers.current_processing_time() + value)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        assert ctx.timers is not None
        return (ctx.key, timestamp, ctx.time_domain, ctx.timers.current_processing_time())


def test_processing_time_timers_fire_when_the_clock_passes_them() -> None:
    clock = ManualClock(1_000)
    with FunctionHarness(Reminder(), key=lambda v: f"k{v}", clock=clock) as harness:
        harness.process(300)
        harness.process(100)
        harness.advance_processing_time(99)
        assert harness.output == []
        harness.advance_processing_time(1)
        assert harness.output_with_timestamps == [
            (("k100", 1_100, "processing_time", 1_100), 1_100)]
        harness.advance_processing_time(1_000)
        # stamped with its own time; the clock has moved on by the time it runs
        assert harness.output_with_timestamps[-1] == (
            ("k300", 1_300, "processing_time", 2_100), 1_300)
        assert harness.timers()["processing_time"] == []


async def test_processing_time_timers_in_a_pipeline() -> None:
    clock = ManualClock(0)
    source = TestSource()
    p = sl.Pipeline(clock=clock)
    out = p.from_source(source).key_by(lambda v: f"k{v}").process(Reminder()).collect()
    async with start(p, source) as job:
        source.add(500)
        source.add(200)
        await job.settle()
        clock.advance(199)
        await job.settle()
        assert out == []
        clock.advance(1)
        await job.settle()
        assert out == [("k200", 200, "processing_time", 200)]
        clock.advance(300)
        await job.settle()
        assert out == [("k200", 200, "processing_time", 200),
                       ("k500", 500, "processing_time", 500)]
        source.end()
        await job.finish()


class Dedup(sl.KeyedProcessFunction):
    """Emits a key's first record, then drops repeats for a second of processing time."""

    seen = sl.ValueState("seen", default=False, ttl=1_000)

    def process(self, value: Any, ctx: sl.Context) -> Any:
        if self.seen.value():
            return None
        self.seen.update(True)
        return value


def test_deduplication_with_value_state_ttl() -> None:
    clock = ManualClock(0)
    with FunctionHarness(Dedup(), key=first, clock=clock) as harness:
        harness.process(("a", 1))
        harness.process(("b", 1))
        harness.advance_processing_time(999)
        harness.process(("a", 2))  # a: written at 0, still remembered at 999
        harness.advance_processing_time(1)
        harness.process(("a", 3))  # a: expired at 1000
        harness.process(("b", 3))
        harness.process(("a", 4))
        assert harness.output == [("a", 1), ("b", 1), ("a", 3), ("b", 3)]
        assert harness.state("seen", "a") == (True, 2_000)  # (value, expires at)


class Timeout(sl.KeyedProcessFunction):
    """Alerts when a key has had no record for 1000 ms; every record re-arms the timer."""

    deadline = sl.ValueState("deadline")

    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        old = self.deadline.value()
        if old is not None:
            ctx.timers.delete_processing_time(old)
        new = ctx.timers.current_processing_time() + 1_000
        ctx.timers.register_processing_time(new)
        self.deadline.update(new)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        self.deadline.clear()
        return f"{ctx.key} silent since {timestamp - 1_000}"


def test_timeout_alert_is_rearmed_by_each_record() -> None:
    clock = ManualClock(0)
    with FunctionHarness(Timeout(), key=lambda v: v, clock=clock) as harness:
        harness.process("a")
        harness.process("b")
        harness.advance_processing_time(500)
        harness.process("a")
        assert harness.timers()["processing_time"] == [("b", 1_000), ("a", 1_500)]
        harness.advance_processing_time(499)
        assert harness.output == []
        harness.advance_processing_time(1)
        assert harness.output == ["b silent since 0"]
        harness.advance_processing_time(499)
        assert harness.output == ["b silent since 0"]
        harness.advance_processing_time(1)
        assert harness.output == ["b silent since 0", "a silent since 500"]
        assert harness.state("deadline", "a") is None
        harness.advance_processing_time(10_000)
        assert len(harness.output) == 2


async def test_timeout_alert_in_a_pipeline() -> None:
    clock = ManualClock(0)
    source = TestSource()
    p = sl.Pipeline(clock=clock)
    out = p.from_source(source).key_by(lambda v: v).process(Timeout()).collect()
    async with start(p, source) as job:
        source.add("a")
        await job.settle()
        clock.advance(900)
        source.add("a")
        await job.settle()
        clock.advance(900)
        await job.settle()
        assert out == []
        clock.advance(100)
        await job.settle()
        assert out == ["a silent since 900"]
        source.end()
        await job.finish()


# -- unkeyed process functions --------------------------------------------------------


class Splitter(sl.ProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        assert ctx.key is None
        assert ctx.timers is None
        if value < 0:
            ctx.output("negative", value)
            return None
        return value * 2


def test_process_function_on_an_unkeyed_stream() -> None:
    p = sl.Pipeline(batch_size=2)
    main = p.from_iterable([1, -2, 3, -4, 5]).process(Splitter(), name="split")
    doubled = main.collect()
    negative = main.side_output("negative").collect()
    p.run()
    assert doubled == [2, 6, 10]
    assert negative == [-2, -4]
    assert main.name == "split"


def test_process_function_in_the_harness() -> None:
    with FunctionHarness(Splitter()) as harness:
        harness.process(1, timestamp=10)
        harness.process(-1, timestamp=11)
        assert harness.output_with_timestamps == [(2, 10)]
        assert harness.side_output("negative") == [-1]


def test_process_function_declaring_state_is_refused_at_run() -> None:
    class Counter(sl.ProcessFunction):
        total = sl.ValueState("total", default=0)
        names = sl.ListState("names")

        def process(self, value: Any, ctx: sl.Context) -> Any:
            return value

    p = sl.Pipeline()
    p.from_iterable([1]).process(Counter(), name="counter").collect()
    with pytest.raises(sl.StreamletConfigError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'counter': Counter declares keyed state (names, total), but the stream is "
        "not keyed; key_by(...) first and use a KeyedProcessFunction")


def test_process_wants_the_right_kind_of_function() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1])
    with pytest.raises(sl.StreamletConfigError, match=r"^Stream.process\(\) takes a "
                       r"sl.ProcessFunction, not <.*Session.*>; for a KeyedProcessFunction, "
                       r"key_by\(...\) first$"):
        stream.process(Session())  # type: ignore[arg-type]


def test_the_same_function_instance_twice_is_refused() -> None:
    fn = Session()
    p = sl.Pipeline()
    keyed = p.from_iterable([("a", 1)]).key_by(first)
    keyed.process(fn, name="sessions")
    with pytest.raises(sl.StreamletConfigError) as info:
        keyed.process(fn)
    assert str(info.value) == (
        "this Session instance is already used by operator 'sessions'; its state is bound to "
        "one operator, so create another instance")


# -- connect --------------------------------------------------------------------------


class Gate(sl.CoProcessFunction):
    """Control records (key, on) switch keys on and off; data passes when on."""

    enabled = sl.ValueState("enabled", default=False)

    def process_element1(self, value: Any, ctx: sl.Context) -> None:
        self.enabled.update(value[1])

    def process_element2(self, value: Any, ctx: sl.Context) -> Any:
        if self.enabled.value():
            return value
        ctx.output("blocked", value)
        return None


async def test_connect_shares_keyed_state_between_the_two_inputs() -> None:
    control, data = TestSource(), TestSource()
    p = sl.Pipeline()
    gated = (p.from_source(control).key_by(first)
             .connect(p.from_source(data).key_by(first))
             .process(Gate(), name="gate"))
    passed = gated.collect()
    blocked = gated.side_output("blocked").collect()
    async with start(p, control, data) as job:
        control.add(("a", True))
        await job.settle()
        data.add_all([("a", 1), ("b", 1)])
        await job.settle()
        control.add(("a", False))
        control.add(("b", True))
        await job.settle()
        data.add_all([("a", 2), ("b", 2)])
        await job.settle()
        control.end()
        data.end()
        await job.finish()
    assert passed == [("a", 1), ("b", 2)]
    assert blocked == [("b", 1), ("a", 2)]


def test_co_process_function_in_the_harness() -> None:
    with FunctionHarness(Gate(), key=first, key2=first) as harness:
        harness.process2(("a", 1))
        harness.process(("a", True))
        harness.process2(("a", 2))
        harness.process2(("b", 3))
        assert harness.output == [("a", 2)]
        assert harness.side_output("blocked") == [("a", 1), ("b", 3)]
        assert harness.state("enabled", "a") is True
        assert harness.state("enabled", "b") is None


def test_connect_wants_keyed_streams_and_a_co_process_function() -> None:
    p = sl.Pipeline()
    a = p.from_iterable([1]).key_by(lambda v: v)
    with pytest.raises(sl.StreamletConfigError, match=r"^connect\(\) takes a keyed stream"):
        a.connect(p.from_iterable([2]))  # type: ignore[arg-type]
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^ConnectedStreams.process\(\) takes a sl.CoProcessFunction"):
        a.connect(p.from_iterable([2]).key_by(lambda v: v)).process(Session())  # type: ignore[arg-type]


# -- side outputs ---------------------------------------------------------------------


class Late(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        assert ctx.timers is not None
        if ctx.timestamp <= ctx.timers.current_watermark():
            ctx.output("late", value)
            return None
        ctx.output("audit", ctx.key)
        return value


def test_side_outputs_in_a_pipeline_keep_timestamps() -> None:
    class Stamps(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            return (value, ctx.timestamp)

    p = sl.Pipeline(batch_size=1)
    main = (p.from_iterable([("a", 10), ("b", 20), ("a", 5), ("b", 30), ("a", 19)])
            .assign_timestamps(lambda r: r[1], sl.WatermarkStrategy.for_monotonous_timestamps())
            .key_by(first)
            .process(Late()))
    on_time = main.collect()
    late = main.side_output("late").key_by(first).process(Stamps()).collect()
    audit = main.side_output("audit").collect()
    p.run()
    assert on_time == [("a", 10), ("b", 20), ("b", 30)]
    assert late == [(("a", 5), 5), (("a", 19), 19)]
    assert audit == ["a", "b", "b"]


def test_side_output_tag_is_a_non_empty_str() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1]).process(Splitter())
    with pytest.raises(sl.StreamletConfigError,
                       match=r"^a side output tag is a non-empty str, not ''$"):
        stream.side_output("")


# -- failures -------------------------------------------------------------------------


class Fragile(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        ctx.emit(("before", value))  # a failed record emits nothing, this included
        if value[1] == 0:
            raise ZeroDivisionError("no zeros")
        return value


def test_error_in_process_names_the_operator_and_the_key() -> None:
    p = sl.Pipeline()
    (p.from_iterable([("a", 1), ("b", 0)]).key_by(first)
        .process(Fragile(), name="fragile").collect())
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'fragile', key 'b': ZeroDivisionError: no zeros while processing record "
        f"('b', 0). {FIX_HINT}")
    assert info.value.key == "b"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_error_in_process_goes_to_dead_letters() -> None:
    p = sl.Pipeline(batch_size=2)
    stream = (p.from_iterable([("a", 1), ("b", 0), ("a", 0), ("c", 2)])
              .assign_timestamps(lambda r: 100 + r[1],
                                 sl.WatermarkStrategy.for_monotonous_timestamps())
              .key_by(first)
              .process(Fragile(), name="fragile", on_error="dead_letter"))
    good = stream.collect()
    dead = stream.dead_letters().collect()
    p.run()
    assert good == [("before", ("a", 1)), ("a", 1), ("before", ("c", 2)), ("c", 2)]
    assert [(d.operator, d.value, d.key, d.timestamp, d.error_message) for d in dead] == [
        ("fragile", ("b", 0), "b", 100, "ZeroDivisionError: no zeros"),
        ("fragile", ("a", 0), "a", 100, "ZeroDivisionError: no zeros"),
    ]


class TimerFails(sl.KeyedProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> None:
        assert ctx.timers is not None
        ctx.timers.register_event_time(ctx.timestamp + 1)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> None:
        raise KeyError("gone")


@pytest.mark.parametrize("on_error", ["fail", "dead_letter"])
def test_error_in_on_timer_fails_the_job(on_error: str) -> None:
    p = sl.Pipeline()
    stream = (p.from_iterable([("a", 5)])
              .assign_timestamps(lambda r: r[1], sl.WatermarkStrategy.for_monotonous_timestamps())
              .key_by(first)
              .process(TimerFails(), name="timer_fails", on_error=on_error))
    if on_error == "dead_letter":
        stream.dead_letters().collect()
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'timer_fails', key 'a': KeyError: 'gone' while processing record "
        f"'on_timer(6) [event_time]'. {FIX_HINT}")
    assert isinstance(info.value.__cause__, KeyError)


def test_error_in_processing_time_on_timer_in_the_harness() -> None:
    class Fails(Reminder):
        def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
            raise RuntimeError("timer broke")

    with FunctionHarness(Fails(), key=lambda v: "k", name="fails") as harness:
        harness.process(10)
        with pytest.raises(sl.UserFunctionError,
                           match=r"^operator 'fails', key 'k': RuntimeError: timer broke while "
                                 r"processing record 'on_timer\(10\) \[processing_time\]'\. "):
            harness.advance_processing_time(10)


def test_keyed_state_in_open_is_a_state_access_error() -> None:
    class EarlyReader(sl.KeyedProcessFunction):
        count = sl.ValueState("count", default=0)

        def open(self) -> None:
            self.count.value()

        def process(self, value: Any, ctx: sl.Context) -> Any:
            return value

    p = sl.Pipeline()
    p.from_iterable([1]).key_by(lambda v: v).process(EarlyReader()).collect()
    with pytest.raises(sl.StateAccessError) as info:
        p.run()
    assert re.fullmatch(f"keyed state 'count' {STATE_ACCESS}", str(info.value))
    assert info.value.state == "count"


def test_keyed_state_from_a_process_function_is_a_state_access_error() -> None:
    counter = Session()

    class Peeks(sl.ProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            return counter.count.value()

    p = sl.Pipeline()
    p.from_iterable([1]).process(Peeks(), name="peeks").collect()
    with pytest.raises(sl.StateAccessError, match=f"^keyed state 'count' {STATE_ACCESS}$"):
        p.run()


def test_keyed_state_of_a_running_function_used_from_elsewhere() -> None:
    """Between records the operator has no current key, so a handle refuses."""
    counter = Dedup()
    p = sl.Pipeline(batch_size=1)
    keyed = p.from_iterable([("a", 1)]).key_by(first)
    keyed.process(counter)
    keyed.map(lambda v: counter.seen.value()).collect()
    with pytest.raises(sl.StateAccessError, match=f"^keyed state 'seen' {STATE_ACCESS}$"):
        p.run()


def test_unhashable_key_is_an_invalid_key_error() -> None:
    p = sl.Pipeline()
    (p.from_iterable([{"tags": ["x", "y"]}])
        .key_by(lambda r: r["tags"], name="by_tags")
        .process(Yields())
        .collect())
    with pytest.raises(sl.InvalidKeyError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'by_tags': key ['x', 'y'] of type list cannot be a key; keys must be str, "
        "int, float, bytes, bool, None or tuples of these. Return one of those from the key "
        "selector.")


def test_manual_clock_jumps_to_the_next_pending_timer() -> None:
    class Ping(sl.KeyedProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            ctx.timers.register_processing_time(5_000)
            ctx.timers.register_processing_time(9_000)

        def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
            return timestamp

    clock = ManualClock(0)
    with FunctionHarness(Ping(), key=lambda v: v, clock=clock) as harness:
        harness.process("a")
        assert clock.jump_to_next() == 5_000
        harness.advance_processing_time(0)
        assert harness.output == [5_000]
        assert clock.jump_to_next() == 9_000
        harness.advance_processing_time(0)
        assert harness.output == [5_000, 9_000]
        assert clock.jump_to_next() is None
