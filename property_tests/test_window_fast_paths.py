"""The specialised window operators against the general one, output for output.

Event-time tumbling and session windows with the default trigger, an
incremental function and state in memory run on ``TumblingOperator`` and
``SessionOperator``; the same pipeline with a SQLite state backend runs on
the general ``WindowOperator``, which ``test_windows`` holds to the oracle.
Here the batches are bigger than one record (so a batch meets several
windows, late records and failures in the middle), the functions fail on
some records and some firings, the allowed lateness re-fires windows, and
everything the two runs emit must be equal in the same order: results with
their timestamps, dead letters, late records, the dropped-late counter, or
the error that failed the job.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import streamlet as sl

_SCALE = float(os.environ.get("STREAMLET_PROPERTY_SCALE", "1"))
BAD = "X"  # a record tag the functions fail on
Record = tuple[str, str, int]  # (tag, key, timestamp)


class Concat(sl.AggregateFunction[str]):
    """Tags in order (merge is not commutative); fails on a bad record, and as a
    window fires when its result ends in ``YY``."""

    def create_accumulator(self) -> str:
        return ""

    def add(self, value: Record, accumulator: str) -> str:
        if value[0] == BAD:
            raise ValueError("a bad record")
        return accumulator + value[0]

    def merge(self, a: str, b: str) -> str:
        return a + b

    def get_result(self, accumulator: str) -> str:
        if accumulator.endswith("YY"):
            raise ValueError("a bad window")
        return accumulator


class CountSum(sl.AggregateFunction[tuple[int, int]]):
    """An immutable accumulator, so that every window starts from one shared value."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Record, accumulator: tuple[int, int]) -> tuple[int, int]:
        if value[0] == BAD:
            raise ValueError("a bad record")
        return (accumulator[0] + 1, accumulator[1] + value[2])

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Collect(sl.AggregateFunction[list[str]]):
    """A mutable accumulator that grows in place, failing as ``Concat`` does."""

    def create_accumulator(self) -> list[str]:
        return []

    def add(self, value: Record, accumulator: list[str]) -> list[str]:
        if value[0] == BAD:
            raise ValueError("a bad record")
        accumulator.append(value[0])
        return accumulator

    def merge(self, a: list[str], b: list[str]) -> list[str]:
        return a + b

    def get_result(self, accumulator: list[str]) -> str:
        text = "".join(accumulator)
        if text.endswith("YY"):
            raise ValueError("a bad window")
        return text


def longest(a: Record, b: Record) -> Record:
    if b[0] == BAD:
        raise ValueError("a bad record")
    return (a[0] + b[0], a[1], max(a[2], b[2]))


def as_row(key: str, window: Any, value: Any) -> Any:
    """A window function: one row, none (``Q``), two (``W``) or a failure (``ZZ``)."""
    text = value if isinstance(value, str) else str(value)
    if text.endswith("ZZ"):
        raise ValueError("a bad row")
    if text.endswith("Q"):
        return None
    if text.endswith("W"):
        return [(key, window.start, text), (key, window.end, text)]
    return (key, window.start, window.end, value)


@dataclass(frozen=True)
class Case:
    records: list[Record]
    session: bool
    size: int  # the tumbling size, or the session gap
    offset: int
    function: str
    window_function: bool
    lateness: int
    bound: int
    batch_size: int
    on_error: str
    late_output: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    keys = draw(st.sampled_from(["a", "ab", "abc", "abcde"]))
    tags = "abcdefgh" + draw(st.sampled_from(["", "XYZQW"]))
    n = draw(st.integers(1, 120))
    t = draw(st.integers(-50, 50))
    records = []
    for _ in range(n):
        t += draw(st.integers(0, 5))
        back = draw(st.sampled_from([0, 0, 0, 1, 7, 29]))
        records.append((draw(st.sampled_from(tags)), draw(st.sampled_from(keys)), t - back))
    return Case(records, draw(st.booleans()), draw(st.integers(1, 24)), draw(st.integers(0, 29)),
                draw(st.sampled_from(["concat", "collect", "count_sum", "count", "reduce"])),
                draw(st.booleans()), draw(st.sampled_from([0, 0, 1, 5, 20])),
                draw(st.sampled_from([0, 1, 5, 10])), draw(st.sampled_from([1, 2, 3, 7, 64])),
                draw(st.sampled_from(["fail", "dead_letter"])), draw(st.booleans()))


class Stamp(sl.ProcessFunction):
    def process(self, value: Any, ctx: sl.Context) -> Any:
        return (value, ctx.timestamp)


def run(case: Case, backend: Any) -> tuple[Any, ...]:
    p = sl.Pipeline("paths", batch_size=case.batch_size, state_backend=backend)
    assigner = (sl.windows.Session(case.size) if case.session
                else sl.windows.Tumbling(case.size, offset=case.offset))
    windowed = (p.from_iterable(case.records)
                .assign_timestamps(lambda r: r[2],
                                   sl.WatermarkStrategy.bounded_out_of_orderness(case.bound))
                .key_by(lambda r: r[1])
                .window(assigner)
                .allowed_lateness(case.lateness))
    if case.late_output:
        windowed = windowed.side_output_late_data("late")
    wf = as_row if case.window_function else None
    options: dict[str, Any] = {"name": "window", "on_error": case.on_error}
    if case.function == "reduce":
        result = windowed.reduce(longest, wf, **options)
    else:
        agg = {"concat": Concat, "collect": Collect, "count_sum": CountSum,
               "count": sl.agg.count}[case.function]
        result = windowed.aggregate(agg(), wf, **options)
    outputs = result.process(Stamp()).collect()
    dead = (result.dead_letters().map(lambda d: (repr(d.value), str(d.error), d.timestamp))
            .collect() if case.on_error == "dead_letter" else [])
    late = result.side_output("late").process(Stamp()).collect() if case.late_output else []
    try:
        job = p.run()
    except sl.StreamletError as exc:
        return list(outputs), list(dead), list(late), None, str(exc)
    return list(outputs), list(dead), list(late), job.operators["window"]["dropped_late"], None


@settings(max_examples=max(1, int(300 * _SCALE)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow],
          phases=[p for p in Phase if p is not Phase.explain])
@given(case=cases())
def test_specialised_operators_emit_what_the_general_one_emits(case: Case) -> None:
    event("session" if case.session else "tumbling")
    event(f"batch size {case.batch_size}")
    fast = run(case, None)
    with tempfile.TemporaryDirectory() as directory:
        general = run(case, sl.SQLiteState(directory, cache_size=2))
    event("job failed" if fast[4] is not None else f"{len(fast[1])} dead letters")
    assert fast == general
