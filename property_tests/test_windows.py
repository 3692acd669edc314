"""Windows against the brute-force oracle of ``windows_oracle``.

Each property draws a ``Case`` (``windows_strategies``): records with random
disorder and keys, a watermark bound (sometimes smaller than the real
disorder, so that records come late), an allowed lateness, an assigner and
a window function. The pipeline runs with ``batch_size=1``, so a watermark
follows every record that raised it and "too late" is deterministic. What it
emits, late firings included, must equal the oracle's outputs as a multiset
and, key by key, in the order the semantics fix (a record's own firings,
then the firings of the watermark after it in time order); the late-data
side output must hold exactly the records the oracle finds too late.

``STREAMLET_PROPERTY_SCALE=10`` runs ten times as many examples of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import streamlet as sl
from property_tests.windows_oracle import (
    Emission,
    WindowOracle,
    freeze,
    reduce_concat,
    static_windows,
)
from property_tests.windows_strategies import (
    Assigner,
    Case,
    Fn,
    cases,
    count,
    fns,
    session,
    sliding,
    tumbling,
)
from streamlet.testing import TestSource, start

TIMEOUT = 10.0  # seconds; these jobs finish in milliseconds, so this means a hang
LATE = "late"
_SCALE = float(os.environ.get("STREAMLET_PROPERTY_SCALE", "1"))

Output = tuple[str, int, int, Any, int]  # key, window start, window end, value, timestamp


def examples(n: int) -> settings:
    # no explain phase: it replays a failing example hundreds of times
    return settings(max_examples=max(1, int(n * _SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                    phases=[p for p in Phase if p is not Phase.explain])


@contextlib.contextmanager
def state_backend(name: str, cache_size: int = 1) -> Iterator[Any]:
    """``None`` (the memory backend) or a SQLite backend in a fresh directory; a
    cache of one entry per state makes every other key a read from SQLite."""
    if name == "memory":
        yield None
        return
    with tempfile.TemporaryDirectory() as directory:
        yield sl.SQLiteState(directory, cache_size=cache_size)


# -- the functions under test ----------------------------------------------------------


class Concat(sl.AggregateFunction[str]):
    """Concatenates the records' tags: merge is associative, not commutative."""

    def create_accumulator(self) -> str:
        return ""

    def add(self, value: Any, accumulator: str) -> str:
        tag: str = value[0]
        return accumulator + tag

    def merge(self, a: str, b: str) -> str:
        return a + b


def process_tags(key: str, window: Any, values: list[Any]) -> Any:
    yield (key, window.start, window.end, [v[0] for v in values])
    if len(values) > 1:
        yield (key, window.start, window.end, len(values))


def as_tuple(key: str, window: Any, value: Any) -> tuple[str, int, int, Any]:
    return (key, window.start, window.end, value)


def build_assigner(a: Assigner) -> sl.windows.WindowAssigner:
    if a.kind == "tumbling":
        return sl.windows.Tumbling(a.size, offset=a.offset)
    if a.kind == "sliding":
        assert a.slide is not None
        return sl.windows.Sliding(a.size, a.slide, offset=a.offset)
    if a.kind == "session":
        return sl.windows.Session(a.gap)
    return sl.windows.Count(a.size, a.slide)


def apply_fn(windowed: sl.WindowedStream, fn: Fn) -> sl.Stream:
    wf = as_tuple if fn.window_function else None
    if fn.kind == "process":
        return windowed.process(process_tags, name="window")
    if fn.kind == "reduce":
        return windowed.reduce(reduce_concat, wf, name="window")
    agg: dict[str, Callable[[], sl.AggregateFunction[Any]]] = {
        "sum": lambda: sl.agg.sum(2), "count": sl.agg.count,
        "collect": lambda: sl.agg.collect_list(0), "first": lambda: sl.agg.first(0),
        "last": lambda: sl.agg.last(0), "max": lambda: sl.agg.max(2),
        "mean": lambda: sl.agg.mean(lambda v: v[2]), "top2": lambda: sl.agg.top_k(2, 2),
        "concat": Concat}
    return windowed.aggregate(agg[fn.kind](), wf, name="window")


def normalize(value: Any) -> tuple[str, int, int, Any]:
    """A WindowResult, or the tuple a window function or process function made."""
    if isinstance(value, sl.windows.WindowResult):
        return (value.key, value.window.start, value.window.end, freeze(value.value))
    key, start, end, inner = value
    return (key, start, end, freeze(inner))


class Stamp(sl.ProcessFunction):
    """Each output as it is emitted (frozen at once), with its timestamp."""

    def process(self, value: Any, ctx: sl.Context) -> Any:
        return (*normalize(value), ctx.timestamp)


class StampLate(sl.ProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        return (value, ctx.timestamp)


# -- running a case --------------------------------------------------------------------


@dataclass
class Run:
    outputs: list[Output]  # frozen as they were emitted
    raw: list[Any]  # the objects emitted, as they are at the end of the run
    late: list[Any]  # (value, timestamp) from the side output
    dropped_late: int


def build(pipeline: sl.Pipeline, source: sl.Stream, case: Case
          ) -> tuple[list[Any], list[Any], list[Any]]:
    """``source -> assign_timestamps -> key_by -> window``; the lists it fills: the
    outputs (frozen as emitted, with timestamps), the objects emitted, the late
    records (with timestamps)."""
    windowed = (source
                .assign_timestamps(lambda v: v[2],
                                   sl.WatermarkStrategy.bounded_out_of_orderness(case.bound))
                .key_by(lambda v: v[1])
                .window(build_assigner(case.assigner))
                .allowed_lateness(case.lateness))
    if case.late_output:
        windowed = windowed.side_output_late_data(LATE)
    result = apply_fn(windowed, case.fn)
    outputs = result.process(Stamp()).collect()
    raw = result.collect()
    late = result.side_output(LATE).process(StampLate()).collect() if case.late_output else []
    return outputs, raw, late


def case_pipeline(case: Case, backend: Any = None
                  ) -> tuple[sl.Pipeline, tuple[list[Any], list[Any], list[Any]]]:
    """The case over ``from_iterable``, one record a batch; ``build``'s lists."""
    pipeline = sl.Pipeline("windows", batch_size=1, channel_capacity=case.channel_capacity,
                           state_backend=backend)
    source = pipeline.from_iterable([r.value for r in case.records])
    return pipeline, build(pipeline, source, case)


def run_case(case: Case, backend: Any = None) -> Run:
    pipeline, (outputs, raw, late) = case_pipeline(case, backend)
    job = asyncio.run(asyncio.wait_for(pipeline.run_async(), TIMEOUT))
    return Run(list(outputs), list(raw), list(late), job.operators["window"]["dropped_late"])


# -- checking --------------------------------------------------------------------------


def steps_of(emissions: list[Emission], key: str) -> list[tuple[tuple[int, str], list[Output]]]:
    """A key's emissions, grouped by the step that made them, in order."""
    steps: list[tuple[tuple[int, str], list[Output]]] = []
    for e in emissions:
        if e.key != key:
            continue
        if steps and steps[-1][0] == e.step:
            steps[-1][1].append(e.output)
        else:
            steps.append((e.step, [e.output]))
    return steps


def check_outputs(got: list[Output], emissions: list[Emission]) -> None:
    """The same outputs as a multiset; and per key in the oracle's order, except
    that the windows one record re-fires (several sliding windows) may come in any
    order among themselves."""
    expected = [e.output for e in emissions]
    missing = Counter(expected) - Counter(got)
    extra = Counter(got) - Counter(expected)
    assert not missing and not extra, f"missing {dict(missing)}, unexpected {dict(extra)}"
    for key in {e.key for e in emissions}:
        mine = [o for o in got if o[0] == key]
        at = 0
        for step, want in steps_of(emissions, key):
            chunk = mine[at:at + len(want)]
            at += len(want)
            if step[1] == "record":
                assert sorted(chunk, key=repr) == sorted(want, key=repr), (key, step)
            else:
                assert chunk == want, f"key {key!r}: firings of the watermark after {step}"


def check_case(case: Case, run: Run) -> WindowOracle:
    oracle = WindowOracle(case).run()
    check_outputs(run.outputs, oracle.emitted)
    expected_late = [(r.value, r.ts) for r in oracle.late]
    if case.late_output:
        assert run.late == expected_late
        assert run.dropped_late == 0
    else:
        assert run.dropped_late == len(expected_late)
    for name in ("late firing", "record in no window", "touching windows merged",
                 "windows bridged"):
        event(name, oracle.happened[name] > 0)
    event("late records", len(oracle.late) > 0)
    event("records behind the watermark", case.n_late_candidates > 0)
    event("tens of records", len(case.records) // 10)
    return oracle


def check(case: Case, backend: str = "memory", cache_size: int = 1) -> None:
    with state_backend(backend, cache_size) as factory:
        run = run_case(case, factory)
    check_case(case, run)


# -- 1. each assigner ------------------------------------------------------------------


@examples(400)
@given(case=cases(tumbling()))
def test_tumbling_windows_match_oracle(case: Case) -> None:
    """Tumbling windows, with and without an offset (sometimes beyond the size):
    the firings, the late firings within the allowed lateness and the late
    records are the oracle's."""
    event("offset", case.assigner.offset != 0)
    check(case)


@examples(400)
@given(case=cases(sliding()))
def test_sliding_windows_match_oracle(case: Case) -> None:
    """Sliding windows whose size is not a multiple of the slide (sometimes smaller
    than it, so some records fall in no window)."""
    check(case)


@examples(600)
@given(case=cases(session()))
def test_session_windows_match_oracle(case: Case) -> None:
    """Session windows with a static gap: overlapping and touching windows merge,
    records bridge two windows, merged contents keep window start order (seen
    through string concatenation, whose merge is not commutative)."""
    check(case)


@examples(200)
@given(case=cases(count()))
def test_count_windows_match_oracle(case: Case) -> None:
    """Count(n) fires and purges every n records of a key; Count(n, slide) emits the
    last n every ``slide`` records; neither fires at the end of input, and nothing is
    late, whatever the watermarks say."""
    check(case)


@examples(100)
@given(case=cases(st.one_of(tumbling(), sliding(), session(), count())),
       cache_size=st.integers(1, 4))
def test_windows_with_sqlite_state_match_oracle(case: Case, cache_size: int) -> None:
    """Any assigner, with the window contents in SQLite behind a cache smaller than
    the number of keys."""
    check(case, "sqlite", cache_size)


# -- 2. the end of a bounded input -----------------------------------------------------


@examples(150)
@given(case=cases(st.one_of(tumbling(), sliding(), session()), fns(("sum", "count"))))
def test_bounded_input_without_watermarks_fires_each_window_once_at_the_end(case: Case) -> None:
    """With a bound larger than the whole input's time span no watermark passes a
    window before the input ends; then the maximum watermark fires every window
    once, with all its records: the windows of a static grouping (sessions by
    chaining sorted timestamps), computed without simulating anything."""
    span = max((r.ts for r in case.records), default=0) - min(
        (r.ts for r in case.records), default=0)
    case = replace(case, bound=span + 100)
    run = run_case(case)
    assert run.late == [] and run.dropped_late == 0
    assert Counter(run.outputs) == static_windows(case)
    check_case(case, run)


async def _feed_then_end(case: Case) -> tuple[list[Output], list[Output]]:
    pipeline = sl.Pipeline("windows", batch_size=1, channel_capacity=case.channel_capacity)
    src = TestSource()
    outputs, _, _ = build(pipeline, pipeline.from_source(src), case)
    async with start(pipeline, src) as job:
        for rec in case.records:
            src.add(rec.value)
        await job.settle()
        before = list(outputs)
        src.end()
        await asyncio.wait_for(job.finish(), TIMEOUT)
    return before, outputs[len(before):]


@examples(150)
@given(case=cases(st.one_of(tumbling(), sliding(), session(), count())))
async def test_end_of_input_fires_the_remaining_event_time_windows(case: Case) -> None:
    """Everything the oracle emits before the end comes out while the input is still
    open; ending it fires exactly the event-time windows still pending (count
    windows: nothing)."""
    before, after = await _feed_then_end(case)
    oracle = WindowOracle(case).run()
    check_outputs(before, [e for e in oracle.emitted if e.step[1] != "end"])
    at_end = [e for e in oracle.emitted if e.step[1] == "end"]
    check_outputs(after, at_end)
    event("windows fire at the end", bool(at_end))


# -- 3. what was emitted stays as it was -----------------------------------------------


@examples(150)
@given(case=cases(st.one_of(tumbling(), sliding(), session()),
                  fns(("collect", "top2", "concat", "process")), min_lateness=1))
def test_emitted_results_do_not_change_afterwards(case: Case) -> None:
    """A result, once emitted, is not changed by what its window receives later (a
    late record, a session merge): the objects collected are compared at the end of
    the run with copies taken as they were emitted. With ``collect_list`` or
    ``top_k`` the emitted value is the window's accumulator itself, so a later
    ``add`` rewrites a result already handed downstream."""
    run = run_case(case)
    at_the_end = [normalize(r) for r in run.raw]
    as_emitted = [o[:4] for o in run.outputs]
    assert at_the_end == as_emitted, (
        "a result changed after it was emitted: "
        f"{[(e, a) for e, a in zip(as_emitted, at_the_end, strict=True) if e != a]}")
