"""Event time, keyed state and timers against the brute-force oracle.

Each property draws a script (``event_time_strategies``), runs it through
the engine (a whole pipeline, a ``FunctionHarness``, or a pipeline driven by
hand with ``TestSource`` and a ``ManualClock``) and compares what came out
with what ``event_time_oracle`` computes from the same script.

``STREAMLET_PROPERTY_SCALE=10`` runs ten times as many examples of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, event, given, settings

import streamlet as sl
from property_tests.event_time_oracle import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    CounterModel,
    IdleOracle,
    Observation,
    processing_time,
    run_pipeline,
    run_script,
)
from property_tests.event_time_strategies import (
    FINAL,
    KEYS,
    Advance,
    AdvanceClock,
    Delete,
    EventStream,
    Feed,
    IdleScript,
    Op,
    ProcessingOp,
    Register,
    TimerFn,
    WatermarkOp,
    event_streams,
    idle_scripts,
    processing_time_scripts,
    timer_fns,
    watermark_scripts,
)
from streamlet.state.sqlite import SQLiteState
from streamlet.testing import FunctionHarness, ManualClock, TestSource, start

TIMEOUT = 10.0  # seconds; these jobs finish in milliseconds, so this means a hang
_SCALE = float(os.environ.get("STREAMLET_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    # no explain phase: it replays a failing example hundreds of times (tens of
    # seconds for a pipeline), and the shrunk example says enough here
    return settings(max_examples=max(1, int(n * _SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                    phases=[p for p in Phase if p is not Phase.explain])


@contextlib.contextmanager
def state_backend(name: str) -> Iterator[Any]:
    """``None`` (the memory backend) or a SQLite backend in a fresh directory."""
    if name == "memory":
        yield None
        return
    assert SQLiteState is not None
    with tempfile.TemporaryDirectory() as directory:
        yield SQLiteState(directory)


# -- the functions under test ----------------------------------------------------------


class TimerCounter(sl.KeyedProcessFunction):
    """Counts per key and sets event-time timers, as ``TimerFn`` describes."""

    count = sl.ValueState("count", default=0)

    def __init__(self, fn: TimerFn) -> None:
        self.fn = fn

    def process(self, value: Any, ctx: sl.Context) -> Any:
        index, key, ts, drop = value
        assert ctx.key == key and ctx.timestamp == ts
        n = self.count.value() + 1
        self.count.update(n)
        if drop:
            ctx.timers.delete_event_time(ts + self.fn.delay)
        else:
            ctx.timers.register_event_time(ts + self.fn.delay)
        ctx.timers.register_event_time(FINAL)
        if self.fn.echo:
            ctx.emit(("rec", key, index, n, ctx.timers.current_watermark()))

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        assert ctx.time_domain == "event_time" and ctx.timestamp == timestamp
        n = self.count.value()
        if timestamp == FINAL:
            yield ("final", ctx.key, n)
            return
        yield ("timer", ctx.key, timestamp, n, ctx.timers.current_watermark())
        if self.fn.clear:
            self.count.clear()
        if self.fn.chain and timestamp % 3 == 0:
            ctx.timers.register_event_time(timestamp + self.fn.chain)


class Stamp(sl.ProcessFunction):
    """Pairs each value with the timestamp it carries."""

    def process(self, value: Any, ctx: sl.Context) -> Any:
        return (value, ctx.timestamp)


class WatermarkProbe(sl.KeyedProcessFunction):
    """What the watermark is when each record arrives."""

    def process(self, value: Any, ctx: sl.Context) -> Any:
        source, index, _ = value
        return (source, index, ctx.timers.current_watermark())


class ProcessingTimers(sl.KeyedProcessFunction):
    """Registers or deletes the processing-time timer a record names."""

    def process(self, value: Any, ctx: sl.Context) -> None:
        op, _, time = value
        if op == "reg":
            ctx.timers.register_processing_time(time)
        else:
            ctx.timers.delete_processing_time(time)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        return (ctx.key, timestamp, ctx.time_domain, ctx.timers.current_processing_time())


# -- 1. a whole pipeline ---------------------------------------------------------------


def counter_pipeline(stream: EventStream, fn: TimerFn, backend: Any = None
                     ) -> tuple[sl.Pipeline, list[Any]]:
    """``from_iterable -> assign_timestamps -> key_by -> TimerCounter -> Stamp``, collected."""
    pipeline = sl.Pipeline("event_time", batch_size=stream.batch_size,
                           channel_capacity=stream.channel_capacity,
                           scheduling_seed=stream.scheduling_seed, state_backend=backend)
    out = (pipeline.from_iterable([e.record for e in stream.events])
           .assign_timestamps(lambda r: r[2],
                              sl.WatermarkStrategy.bounded_out_of_orderness(stream.bound))
           .key_by(lambda r: r[1])
           .process(TimerCounter(fn))
           .process(Stamp())  # chained: it sees the same order, and the timestamps
           .collect())
    return pipeline, out


def run_counter_pipeline(stream: EventStream, fn: TimerFn, backend: Any) -> list[Any]:
    pipeline, out = counter_pipeline(stream, fn, backend)
    asyncio.run(asyncio.wait_for(pipeline.run_async(), TIMEOUT))
    return list(out)


def _late(stream: EventStream) -> int:
    """How many records arrive at or behind a watermark already emitted."""
    late = 0
    highest: int | None = None
    for start_at in range(0, len(stream.events), stream.batch_size):
        batch = stream.events[start_at:start_at + stream.batch_size]
        if highest is not None:
            late += sum(e.ts <= highest - stream.bound - 1 for e in batch)
        top = max(e.ts for e in batch)
        highest = top if highest is None else max(highest, top)
    return late


def check_pipeline(stream: EventStream, fn: TimerFn, backend: str) -> None:
    with state_backend(backend) as factory:
        got = run_counter_pipeline(stream, fn, factory)
    model = run_pipeline(stream, fn)
    assert got == model.out
    finals = {value[1]: value[2] for value, _ in model.out if value[0] == "final"}
    assert set(finals) == {e.key for e in stream.events}
    assert finals == {key: model.count.get(key, 0) for key in finals}
    assert not model.timers.pending, "the maximum watermark fires every timer"
    event("late records" if _late(stream) else "no late records")


@examples(150)
@given(stream=event_streams(), fn=timer_fns())
def test_event_time_timers_in_a_pipeline_match_oracle(stream: EventStream,
                                                      fn: TimerFn) -> None:
    """Batches of ``batch_size`` records, a watermark after each batch that moved
    it, due timers firing in (time, registration) order before anything else,
    and the maximum watermark at the end: the same outputs with the same
    timestamps, in the same order, and the same final count per key."""
    check_pipeline(stream, fn, "memory")


@examples(30)
@given(stream=event_streams(), fn=timer_fns())
def test_event_time_timers_in_a_pipeline_with_sqlite_state(stream: EventStream,
                                                           fn: TimerFn) -> None:
    """The same with keyed state in SQLite."""
    check_pipeline(stream, fn, "sqlite")


# -- 2. a FunctionHarness with explicit watermarks -------------------------------------


def check_harness(harness: FunctionHarness, model: CounterModel) -> None:
    assert harness.output_with_timestamps == model.out
    assert harness.watermarks == model.forwarded
    for key in KEYS:
        assert harness.state("count", key) == model.count.get(key), f"count of {key!r}"
    assert harness.timers()["event_time"] == model.timers.in_order()
    assert harness.timers()["processing_time"] == []


def check_script(ops: tuple[Op, ...], fn: TimerFn, backend: str = "memory") -> None:
    """Drive the function through a harness by ``ops``, then end the input; compare
    with the oracle after the script and after the end."""
    with state_backend(backend) as factory, \
            FunctionHarness(TimerCounter(fn), key=lambda r: r[1],
                            state_backend=factory) as harness:
        for op in ops:
            if isinstance(op, WatermarkOp):
                harness.watermark(op.timestamp)
            else:
                harness.process(op.record, timestamp=op.ts)
        model = run_script(ops, fn)
        check_harness(harness, model)
        harness.end_input()
        model.advance(MAX_WATERMARK)
        check_harness(harness, model)
        assert not model.timers.pending


@examples(200)
@given(ops=watermark_scripts(), fn=timer_fns())
def test_harness_with_explicit_watermarks_matches_oracle(ops: tuple[Op, ...],
                                                         fn: TimerFn) -> None:
    """Records and non-decreasing watermarks (some repeated, some behind records
    already seen) pushed one at a time: outputs, forwarded watermarks, state and
    pending timers agree with the oracle after the script and after the end."""
    check_script(ops, fn)


@examples(30)
@given(ops=watermark_scripts(), fn=timer_fns())
def test_harness_with_explicit_watermarks_with_sqlite_state(ops: tuple[Op, ...],
                                                            fn: TimerFn) -> None:
    """The same with keyed state in SQLite."""
    check_script(ops, fn, "sqlite")


@examples(100)
@given(ops=watermark_scripts(max_step=1, max_disorder=2, min_keys=2),
       fn=timer_fns(due_chains=True))
def test_timer_registered_already_due_fires_in_time_order(ops: tuple[Op, ...],
                                                          fn: TimerFn) -> None:
    """``on_timer`` registers a timer before its own time, so already due: it fires
    in the same round, in (time, registration) order with the other due timers,
    as Flink's timer service does (its loop peeks the queue after every timer)."""
    check_script(ops, fn)


# -- 3. idleness, with two sources unioned ---------------------------------------------


def check_observations(got: list[tuple[int, int, int]], expected: list[Observation],
                       previous: int) -> int:
    """The records one step sent, as seen downstream; returns the last watermark seen."""
    assert sorted((s, i) for s, i, _ in got) == sorted((o.source, o.index) for o in expected)
    bounds = {(o.source, o.index): o for o in expected}
    for source, index, seen in got:
        o = bounds[(source, index)]
        assert seen >= previous, f"record {source}/{index}: the watermark went back"
        assert seen <= o.at_most, f"record {source}/{index}: watermark beyond the bound"
        assert seen >= o.at_least, f"record {source}/{index}: watermark held back"
        if o.other_idle and o.own_active:
            event("one input idle while the other sends")
            assert seen >= o.own, (f"record {source}/{index}: the other input is idle, "
                                   "yet it still holds the watermark back")
        previous = seen
    return previous


async def _run_idle_script(script: IdleScript) -> None:
    clock = ManualClock(0)
    pipeline = sl.Pipeline("idleness", batch_size=script.batch_size, clock=clock,
                           scheduling_seed=script.scheduling_seed)
    sources = [TestSource(), TestSource()]
    stamped = [
        pipeline.from_source(src, name=f"source{i}").assign_timestamps(
            lambda r: r[2],
            sl.WatermarkStrategy.bounded_out_of_orderness(script.bounds[i])
            .with_idleness(script.idleness), name=f"stamp{i}")
        for i, src in enumerate(sources)]
    out = stamped[0].union(stamped[1]).key_by(lambda r: r[0]).process(WatermarkProbe()).collect()
    oracle = IdleOracle(script)
    seen = MIN_WATERMARK
    sent = [0, 0]
    async with start(pipeline, *sources) as job:
        await job.settle()
        for step in script.steps:
            before = len(out)
            if isinstance(step, Advance):
                clock.advance(step.ms)
            else:
                for ts in step.stamps:
                    sources[step.source].add((step.source, sent[step.source], ts))
                    sent[step.source] += 1
            await job.settle()
            seen = check_observations(out[before:], oracle.step(step), seen)
        for src in sources:
            src.end()
        await asyncio.wait_for(job.finish(), TIMEOUT)
    assert len(out) == sum(len(s.stamps) for s in script.steps if isinstance(s, Feed))


@examples(120)
@given(script=idle_scripts())
async def test_idle_source_stops_holding_back_the_watermark(script: IdleScript) -> None:
    """Two sources with ``with_idleness(I)`` into a union; one stops sending.
    Downstream, the watermark never goes back, never passes the minimum over
    the inputs that are not idle, and once the stopped one has been idle for
    ``I`` of processing time it no longer holds the other back."""
    await _run_idle_script(script)


# -- 4. processing-time timers ---------------------------------------------------------


def _apply(harness: FunctionHarness, op: ProcessingOp) -> None:
    if isinstance(op, Register):
        harness.process(("reg", op.key, op.time))
    elif isinstance(op, Delete):
        harness.process(("del", op.key, op.time))
    elif isinstance(op, AdvanceClock):
        harness.advance_processing_time(op.ms)
    else:
        raise AssertionError(op)


@examples(300)
@given(script=processing_time_scripts())
def test_processing_time_timers_fire_as_the_oracle_says(
        script: tuple[int, tuple[ProcessingOp, ...]]) -> None:
    """Registrations (some in the past), deletions and clock advances: each advance
    fires exactly the pending timers at or before the new time, in (time,
    registration) order, and nothing fires between advances."""
    begin, ops = script
    clock = ManualClock(begin)
    expected = processing_time(begin, ops)
    with FunctionHarness(ProcessingTimers(), key=lambda v: v[1], clock=clock) as harness:
        for op, (fired, now, pending) in zip(ops, expected, strict=True):
            before = len(harness.output)
            _apply(harness, op)
            new = harness.output_with_timestamps[before:]
            assert [(key, time) for (key, time, _, _), _ in new] == fired, op
            if isinstance(op, Register) and op.time <= now:
                event("a timer registered in the past")
            for (_, time, domain, at), stamp in new:
                assert domain == "processing_time"
                assert stamp == time, "on_timer outputs carry the timer's time"
                assert time <= at <= now, "fired after its time, by the time the clock got"
            assert clock.now() == now
            assert harness.timers()["processing_time"] == pending
            assert harness.timers()["event_time"] == []

