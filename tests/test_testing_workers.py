"""streamlet.testing's helpers for comparing runs across worker counts."""

from __future__ import annotations

import pytest

import streamlet as sl
from streamlet.testing import assert_same_output, run_collected, same_output


def running_sums() -> tuple[sl.Pipeline, sl.Collected]:
    p = sl.Pipeline("sums", batch_size=4)
    out = (p.from_iterable([(x % 10, x) for x in range(60)]).key_by(lambda r: r[0])
           .reduce(lambda a, b: (a[0], a[1] + b[1])).collect())
    return p, out


def test_same_output_runs_one_and_three_workers_and_compares_per_key() -> None:
    one, three = same_output(running_sums, workers=(1, 3), key=lambda r: r[0])
    assert len(one) == len(three) == 60
    assert one[:10] == [(k, k) for k in range(10)]  # one worker: input order
    assert sorted(three) == sorted(one)
    assert [r for r in three if r[0] == 7] == [(7, 7), (7, 24), (7, 51), (7, 88), (7, 135),
                                              (7, 192)]


def test_run_collected_copies_each_output_in_the_shape_build_gave() -> None:
    def build() -> tuple[sl.Pipeline, dict[str, sl.Collected]]:
        p = sl.Pipeline("shapes")
        numbers = p.from_iterable([1, 2, 3])
        return p, {"doubled": numbers.map(lambda x: 2 * x).collect(),
                   "odd": numbers.filter(lambda x: x % 2 == 1).collect()}

    assert run_collected(build, 1) == {"doubled": [2, 4, 6], "odd": [1, 3]}
    with pytest.raises(sl.StreamletConfigError, match="build"):
        run_collected(lambda: (sl.Pipeline("bad"), 3), 1)


def test_a_mismatch_names_what_is_missing_and_extra() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_same_output([1, 2, 2, [4], {"a": 1}], [2, 1, (4,), 6, {"a": 1}],
                           names=("workers=1", "workers=3"))
    assert str(caught.value) == (
        "5 values from workers=1, 5 from workers=3\n"
        "  only in workers=1 (2): 2, [4]\n"
        "  only in workers=3 (2): (4,), 6")


def test_a_key_whose_order_differs_is_named_with_where() -> None:
    assert_same_output([("a", 1), ("b", 1), ("a", 2)], [("b", 1), ("a", 1), ("a", 2)],
                       key=lambda r: r[0])  # across keys the order is free
    with pytest.raises(AssertionError) as caught:
        assert_same_output({"sums": [("a", 1), ("b", 1), ("a", 3)]},
                           {"sums": [("a", 3), ("b", 1), ("a", 1)]}, key=lambda r: r[0])
    assert str(caught.value) == (
        "output 'sums': key 'a': the same values in another order, first at position 0: "
        "expected has ('a', 1), actual ('a', 3)\n"
        "  expected: [('a', 1), ('a', 3)]\n"
        "  actual: [('a', 3), ('a', 1)]")
