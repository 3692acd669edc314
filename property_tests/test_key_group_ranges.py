"""Key-group ranges against brute force: every group is owned by exactly one
worker, ranges are contiguous and balanced, and the routing function agrees
with the ranges (Flink's KeyGroupRangeAssignment)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamlet.state.keys import key_group, key_group_range, worker_for_key_group


@given(st.integers(min_value=1, max_value=4096).flatmap(
    lambda maxp: st.tuples(st.just(maxp), st.integers(min_value=1, max_value=maxp))))
def test_ranges_split_the_key_groups_and_routing_agrees(case: tuple[int, int]) -> None:
    maxp, workers = case
    ranges = [key_group_range(w, workers, maxp) for w in range(workers)]
    owners = [w for w, r in enumerate(ranges) for _ in r]
    assert [g for r in ranges for g in r] == list(range(maxp))  # contiguous, in order, once
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1  # balanced
    assert all(len(r) >= 1 for r in ranges)
    assert [worker_for_key_group(g, workers, maxp) for g in range(maxp)] == owners


@given(st.one_of(st.integers(), st.text()), st.integers(min_value=1, max_value=8))
def test_a_key_goes_to_the_worker_that_owns_its_group(key: object, workers: int) -> None:
    group = key_group(key, 128)
    assert group in key_group_range(worker_for_key_group(group, workers, 128), workers, 128)
