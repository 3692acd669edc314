"""The planner chains 1:1 operators and cuts only where it must."""

from __future__ import annotations

import streamlet as sl


def _chains(pipeline: sl.Pipeline) -> list[list[str]]:
    return [[n.name for n in task.nodes] for task in pipeline.plan().tasks]


def test_stateless_operators_fuse_into_the_source_task() -> None:
    p = sl.Pipeline("p")
    p.from_iterable([1], name="src").map(str, name="m").filter(bool, name="f").sink(
        print, name="out")
    assert _chains(p) == [["src", "m", "f", "out"]]


def test_key_by_cuts_the_chain_and_the_keyed_side_starts_a_task() -> None:
    p = sl.Pipeline("p")
    (p.from_iterable([1], name="src").key_by(lambda x: x, name="k")
        .reduce(max, name="r").map(str, name="m").collect(name="c"))
    plan = p.plan()
    assert _chains(p) == [["src", "k"], ["r", "m", "c"]]
    assert "r: reduce:r -> map:m -> sink:c  <= k[hash]" in plan.describe()


def test_union_starts_a_task_with_one_channel_per_input() -> None:
    p = sl.Pipeline("p")
    a = p.from_iterable([1], name="a")
    b = p.from_iterable([2], name="b")
    a.union(b, a.map(str, name="m"), name="u").collect(name="c")
    tasks = p.plan().tasks
    assert _chains(p) == [["a", "m"], ["b"], ["u", "c"]]
    assert [producer.name for producer, _ in tasks[2].inputs] == ["a", "b", "m"]


def test_fan_out_stays_in_one_task() -> None:
    p = sl.Pipeline("p")
    s = p.from_iterable([1], name="src")
    s.map(str, name="m1").collect(name="c1")
    s.map(repr, name="m2").collect(name="c2")
    assert _chains(p) == [["src", "m1", "c1", "m2", "c2"]]


def test_default_names_are_unique_and_readable() -> None:
    p = sl.Pipeline("p")
    s = p.from_iterable([1])
    s.map(lambda x: x).map(lambda x: x).map(str).collect()
    assert [n.name for n in p.graph.nodes] == [
        "from_iterable", "map", "map-2", "str", "collect"]


def test_one_batch_of_every_kind_runs_through_the_plan() -> None:
    p = sl.Pipeline("p")
    s = p.from_iterable(range(10))
    keyed = s.key_by(lambda x: x % 2).reduce(lambda a, b: a + b)
    out = keyed.union(s.filter(lambda x: x > 7)).collect()
    p.run()
    assert sorted(out) == sorted([0, 1, 2, 4, 6, 9, 12, 16, 20, 25, 8, 9])


def test_a_plain_function_returning_a_coroutine_is_refused() -> None:
    async def lookup(x: int) -> int:
        return x

    for build in (lambda s: s.map(lambda x: lookup(x), name="op"),
                  lambda s: s.filter(lambda x: lookup(x), name="op"),
                  lambda s: s.sink(lambda x: lookup(x), name="op"),
                  lambda s: s.key_by(lambda x: 0).reduce(lambda a, b: lookup(b), name="op")):
        p = sl.Pipeline("p")
        out = build(p.from_iterable([1, 2, 3]))
        if isinstance(out, sl.Stream):
            out.collect()
        try:
            p.run()
        except sl.StreamletConfigError as exc:
            assert "operator 'op': the function returned an awaitable" in str(exc)
            assert "Declare it with 'async def'" in str(exc)
        else:
            raise AssertionError("a coroutine-returning plain function was accepted")
