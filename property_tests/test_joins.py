"""Interval joins and window joins against a nested-loop oracle.

Every source batch is one record (``batch_size=1``) and the watermark trails
each side by the bound, so which records are "late" is decided by the same
rule in the oracle as in the engine: a record behind the watermark it meets
is dropped by the interval join (Flink's rule), and the windows of a window
join fire once the watermark passes their end.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import streamlet as sl

KEYS = ("a", "b")
Row = tuple[str, int]  # key, timestamp


def keyed_records(keys: tuple[str, ...] = KEYS, max_size: int = 12
                  ) -> st.SearchStrategy[list[Row]]:
    return st.lists(st.tuples(st.sampled_from(keys), st.integers(0, 60)), max_size=max_size)


records = keyed_records()
STAMPS = sl.WatermarkStrategy.for_monotonous_timestamps()
BIG = sl.WatermarkStrategy.bounded_out_of_orderness(10_000)  # nothing is ever late


def _sorted_by_time(rows: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Records in time order (so no side is ever late), each with its index."""
    return sorted(((key, ts, i) for i, (key, ts) in enumerate(rows)), key=lambda r: r[1])


def interval_join_pipeline(left: list[Row], right: list[Row], lower: int, upper: int
                           ) -> tuple[sl.Pipeline, list[tuple[int, int]]]:
    """Two inputs, nothing ever late, joined by key within ``[lower, upper]``:
    the pairs of indexes joined."""
    p = sl.Pipeline("interval", batch_size=1)
    a = p.from_iterable(list(enumerate(left))).assign_timestamps(lambda r: r[1][1], BIG,
                                                                 name="ts_left")
    b = p.from_iterable(list(enumerate(right))).assign_timestamps(lambda r: r[1][1], BIG,
                                                                  name="ts_right")
    joined = (a.key_by(lambda r: r[1][0]).interval_join(b.key_by(lambda r: r[1][0]))
              .between(lower, upper).process(lambda x, y: (x[0], y[0])))
    return p, joined.collect()


def interval_pairs(left: list[Row], right: list[Row], lower: int, upper: int
                   ) -> Counter[tuple[int, int]]:
    return Counter((i, j) for i, (ka, ta) in enumerate(left)
                   for j, (kb, tb) in enumerate(right)
                   if ka == kb and ta + lower <= tb <= ta + upper)


@settings(max_examples=120, deadline=None)
@given(left=records, right=records, lower=st.integers(-20, 10), width=st.integers(0, 20))
def test_interval_join_without_late_records_equals_nested_loops(
        left: list[tuple[str, int]], right: list[tuple[str, int]], lower: int,
        width: int) -> None:
    p, out = interval_join_pipeline(left, right, lower, lower + width)
    result = p.run()
    assert result.operators["interval_join"]["dropped_late"] == 0
    assert Counter(out) == interval_pairs(left, right, lower, lower + width)


@settings(max_examples=120, deadline=None)
@given(left=records, right=records, lower=st.integers(-20, 10), width=st.integers(0, 20))
def test_interval_join_with_cleanup_never_joins_wrongly(left: list[tuple[str, int]],
                                           right: list[tuple[str, int]], lower: int,
                                           width: int) -> None:
    upper = lower + width
    lefts = _sorted_by_time(left)
    rights = _sorted_by_time(right)
    p = sl.Pipeline("interval", batch_size=1)
    a = p.from_iterable(lefts).assign_timestamps(lambda r: r[1], STAMPS, name="ts_left")
    b = p.from_iterable(rights).assign_timestamps(lambda r: r[1], STAMPS, name="ts_right")
    joined = (a.key_by(lambda r: r[0]).interval_join(b.key_by(lambda r: r[0]))
              .between(lower, upper).process(lambda x, y: (x[2], y[2])))
    out = joined.collect()
    result = p.run()
    late = result.operators["interval_join"]["dropped_late"]
    # The two sources interleave, so a record may meet a watermark the other side
    # moved past it: those are dropped (and counted), never joined wrongly.
    expected = Counter((x[2], y[2]) for x in lefts for y in rights
                       if x[0] == y[0] and x[1] + lower <= y[1] <= x[1] + upper)
    got = Counter(out)
    assert got <= expected  # nothing that should not join
    if late == 0:
        assert got == expected  # and with no late record, everything that should


@settings(max_examples=120, deadline=None)
@given(left=records, right=records, size=st.integers(1, 30))
def test_window_join_and_co_group_equal_nested_loops(left: list[tuple[str, int]],
                                                     right: list[tuple[str, int]],
                                                     size: int) -> None:
    p, (inner, groups) = window_join_pipeline(left, right, size)
    p.run()
    check_window_join(left, right, size, inner, groups)


def window_join_pipeline(left: list[Row], right: list[Row], size: int
                         ) -> tuple[sl.Pipeline, tuple[list[Any], list[Any]]]:
    """A tumbling window join (pairs of indexes) and co_group (the sorted indexes
    of each side) of two inputs by key, nothing ever late."""
    p = sl.Pipeline("window-join", batch_size=1)
    a = p.from_iterable(list(enumerate(left))).assign_timestamps(lambda r: r[1][1], BIG,
                                                                 name="ts_left")
    b = p.from_iterable(list(enumerate(right))).assign_timestamps(lambda r: r[1][1], BIG,
                                                                  name="ts_right")
    inner = (a.join(b).where(lambda r: r[1][0]).equal_to(lambda r: r[1][0])
             .window(sl.windows.Tumbling(size)).apply(lambda x, y: (x[0], y[0])).collect())
    groups = (a.co_group(b).where(lambda r: r[1][0]).equal_to(lambda r: r[1][0])
              .window(sl.windows.Tumbling(size))
              .apply(lambda xs, ys: (sorted(x[0] for x in xs), sorted(y[0] for y in ys)))
              .collect())
    return p, (inner, groups)


def check_window_join(left: list[Row], right: list[Row], size: int, inner: list[Any],
                      groups: list[Any]) -> None:
    def window_of(ts: int) -> int:
        return ts - ts % size

    expected_pairs = Counter(
        (i, j) for i, (ka, ta) in enumerate(left) for j, (kb, tb) in enumerate(right)
        if ka == kb and window_of(ta) == window_of(tb))
    assert Counter(inner) == expected_pairs
    cells: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for i, (key, ts) in enumerate(left):
        cells.setdefault((key, window_of(ts)), ([], []))[0].append(i)
    for j, (key, ts) in enumerate(right):
        cells.setdefault((key, window_of(ts)), ([], []))[1].append(j)
    expected_groups = Counter((tuple(sorted(xs)), tuple(sorted(ys)))
                              for xs, ys in cells.values())
    assert Counter((tuple(xs), tuple(ys)) for xs, ys in groups) == expected_groups


@settings(max_examples=60, deadline=None)
@given(rows=records, size=st.integers(1, 30))
def test_window_all_counts_every_record_once(rows: list[tuple[str, int]], size: int) -> None:
    p, counts = window_all_pipeline(rows, size)
    p.run()
    check_window_all(rows, size, counts)


def window_all_pipeline(rows: list[Row], size: int) -> tuple[sl.Pipeline, list[Any]]:
    p = sl.Pipeline("all", batch_size=1)
    stamped = p.from_iterable(rows).assign_timestamps(lambda r: r[1], BIG)
    return p, stamped.window_all(sl.windows.Tumbling(size)).aggregate(sl.agg.count()).collect()


def check_window_all(rows: list[Row], size: int, counts: list[Any]) -> None:
    expected = Counter(ts - ts % size for _, ts in rows)
    got: dict[Any, int] = {r.window.start: r.value for r in counts}
    assert got == dict(expected)
    assert all(r.key is None for r in counts)
