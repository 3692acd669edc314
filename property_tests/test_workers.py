"""The property pipelines of the earlier issues on one worker and on three (issue 7).

Each property draws a case from the strategies of ``test_pipelines``,
``test_windows``, ``test_event_time`` and ``test_joins``, builds it with the
same builders, runs it with ``workers=1`` and ``workers=3``
(``streamlet.testing.run_collected``) and asserts that both runs collected
the same values as multisets, each key's in the same order where the
semantics fix it (a running reduce, a window's firings, a key's timers), and
that both equal the oracle where the oracle gives them.

With three workers a ``from_iterable`` source is read by worker 0 alone,
exactly as by one process, so every record meets the same watermarks and
"late" is decided as with one worker; behind a ``key_by`` each key lives on one
worker, in its input order. A second ``key_by`` would merge records of one key
arriving from several workers in an order nothing fixes, so the programs drawn
here reduce only behind their first shuffle. ``from_partitions`` spreads the
partitions over the workers; with each key in one partition and a watermark
bound that leaves no record late, what fires does not depend on who reads what.

Every run with three workers starts three processes, so each property runs a
few examples only (``STREAMLET_WORKER_EXAMPLES`` for more), and the keys are
spread over all three workers' key groups.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import streamlet as sl
from property_tests import test_event_time, test_joins, test_pipelines, test_windows
from property_tests.event_time_oracle import run_pipeline
from property_tests.event_time_strategies import EventStream, TimerFn, event_streams, timer_fns
from property_tests.oracle import (
    dead_letters,
    evaluate,
    keyed_tail,
    last_node,
    tail_key,
    values_per_key,
)
from property_tests.strategies import (
    Apply,
    KeyedTail,
    Output,
    Program,
    RunOptions,
    Source,
    dag_programs,
    keyed_tails,
    linear_programs,
    run_options,
)
from property_tests.windows_oracle import WindowOracle
from property_tests.windows_strategies import Case, cases, count, session, sliding, tumbling
from streamlet.state.keys import key_group, worker_for_key_group
from streamlet.testing import assert_same_output, run_collected

WORKERS = (1, 3)
TIMEOUT = 60.0  # seconds for one run; they take about one, so this means a hang
_EXAMPLES = int(os.environ.get("STREAMLET_WORKER_EXAMPLES", "5"))
# letters whose key groups fall on each of three workers (a, e: 0; b, c: 1; d, j: 2)
WINDOW_KEYS = ("a", "b", "d", "c", "e", "j")
TAIL_MODULI = st.integers(8, 12)  # 0..7 as ints, "k0".."k7" as strs: every worker has some


def examples(n: int = _EXAMPLES) -> settings:
    # derandomized: the same few examples every run; no shrinking or explaining (each
    # replays a failing example many times, minutes when every run starts processes)
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


def both(build: Any) -> list[Any]:
    """What ``build``'s pipeline collects on each worker count of ``WORKERS``."""
    return [run_collected(build, n, timeout=TIMEOUT) for n in WORKERS]


def same(runs: list[Any], key: Any = None) -> None:
    assert_same_output(runs[0], runs[1], key=key, names=("workers=1", "workers=3"))


def spread(keys: set[Any]) -> set[int]:
    return {worker_for_key_group(key_group(k), 3) for k in keys}


def test_the_keys_used_here_reach_every_worker() -> None:
    assert spread(set(WINDOW_KEYS[:3])) == {0, 1, 2}
    assert spread(set(range(8))) == spread({f"k{i}" for i in range(8)}) == {0, 1, 2}
    assert spread(set(test_event_time.KEYS)) == {0, 1, 2}


# -- test_pipelines: random programs -----------------------------------------------------


def shuffled_once(program: Program) -> bool:
    """Does every reduce follow the first ``key_by`` on its path from the sources?"""
    shuffles: list[int] = []
    for node in program.nodes:
        if isinstance(node, Source):
            shuffles.append(0)
        elif isinstance(node, Apply):
            before = shuffles[node.parent]
            if node.step.op == "reduce" and before != 1:
                return False
            shuffles.append(before + (node.step.op == "key_by"))
        else:
            shuffles.append(max(shuffles[i] for i in node.parents))
    return True


def for_workers(program: Program) -> Program:
    """Every source a list (an async generator cannot travel to a worker) and every
    output a collect (a sink function runs in the workers, its list stays there)."""
    nodes = tuple(replace(n, is_async=False) if isinstance(n, Source) else n
                  for n in program.nodes)
    return Program(nodes, tuple(Output(o.node) for o in program.outputs))


def program_build(program: Program, options: RunOptions) -> Any:
    def build() -> tuple[sl.Pipeline, dict[str, list[Any]]]:
        built = test_pipelines.build(program, options)
        outputs = {f"output {i}": out for i, out in enumerate(built.outputs)}
        outputs.update({f"dead letters of n{node}": out for node, out in built.dead.items()})
        return built.pipeline, outputs
    return build


def letters(run: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Dead letters as (operator, value, error type): an exception is equal only to itself."""
    return {name: [(d.operator, d.value, type(d.error).__name__) for d in values]
            if name.startswith("dead") else values for name, values in run.items()}


@examples()
@given(program=st.one_of(linear_programs(faults=True), dag_programs(interleaved=True))
       .map(for_workers).filter(shuffled_once), options=run_options)
def test_programs_collect_the_same_on_three_workers(program: Program,
                                                    options: RunOptions) -> None:
    """Chains, fan-outs, unions, unordered async operators, faulty functions with dead
    letters: the same outputs and dead letters as multisets, the oracle's."""
    runs = [letters(run) for run in both(program_build(program, options))]
    same(runs)
    for i, expected in enumerate(evaluate(program)):
        assert Counter(runs[1][f"output {i}"]) == Counter(expected.values), f"output {i}"
    for node, dead in dead_letters(program).items():
        assert Counter(v for _, v, _ in runs[1][f"dead letters of n{node}"]) == Counter(
            dead.values), f"dead letters of n{node}"


def tail_of(tail: KeyedTail, out: Any) -> Any:
    """The key of a tail's output: its accumulator's first record's."""
    return tail_key(tail, out.split(",")[0] if tail.kind == "str" else out)


def tail_build(program: Program, tail: KeyedTail, options: RunOptions) -> Any:
    def build() -> tuple[sl.Pipeline, list[Any]]:
        built = test_pipelines.build(program, options, with_outputs=False)
        return built.pipeline, test_pipelines.attach_tail(built.streams[-1], tail)
    return build


def no_key_by(program: Program) -> bool:
    return not any(isinstance(n, Apply) and n.step.op == "key_by" for n in program.nodes)


@examples()
@given(program=linear_programs(max_steps=3).map(for_workers).filter(no_key_by),
       tail=keyed_tails(["list", "str"], allow_unordered=False), modulus=TAIL_MODULI,
       options=run_options)
def test_a_running_reduce_keeps_each_keys_order_on_three_workers(
        program: Program, tail: KeyedTail, modulus: int, options: RunOptions) -> None:
    """A non-commutative reduce (list append, string concatenation) behind one
    shuffle: each key's running values in the same order on one and three workers,
    the oracle's."""
    tail = replace(tail, modulus=modulus)
    runs = both(tail_build(program, tail, options))
    key = lambda out: tail_of(tail, out)  # noqa: E731
    same(runs, key)
    assert_same_output(keyed_tail(tail, last_node(program).values), runs[1], key=key,
                       names=("oracle", "workers=3"))


@examples()
@given(program=dag_programs(interleaved=True, max_nodes=5).map(for_workers)
       .filter(shuffled_once),
       tail=keyed_tails(["sum"], allow_unordered=True), modulus=TAIL_MODULI,
       options=run_options)
def test_running_sums_after_interleaving_add_up_per_key_on_three_workers(
        program: Program, tail: KeyedTail, modulus: int, options: RunOptions) -> None:
    """After a union or an unordered operator the interleaving is free on any worker
    count; each key's running sum still adds one of its records at a time."""
    tail = replace(tail, modulus=modulus)
    expected = values_per_key(tail, last_node(program).values)
    for out in both(tail_build(program, tail, options)):
        test_pipelines.check_running_sums(out, expected)


# -- test_windows: windows over from_iterable and from_partitions --------------------------


def window_build(case: Case) -> Any:
    def build() -> tuple[sl.Pipeline, dict[str, list[Any]]]:
        pipeline, (outputs, _, late) = test_windows.case_pipeline(case)
        return pipeline, {"outputs": outputs, "late": late}
    return build


any_assigner = st.one_of(tumbling(), sliding(), session(), count())


@examples(6)
@given(case=cases(any_assigner, keys=WINDOW_KEYS))
def test_windows_fire_the_same_on_three_workers(case: Case) -> None:
    """Late records and late firings included: every key's firings in the same order
    on one and three workers, and the oracle's; the same late records."""
    runs = both(window_build(case))
    same(runs, key=lambda o: o[0])
    oracle = WindowOracle(case).run()
    for run in runs:
        test_windows.check_outputs(run["outputs"], oracle.emitted)
        if case.late_output:
            assert Counter(run["late"]) == Counter((r.value, r.ts) for r in oracle.late)


def partitioned_build(case: Case, partitions: int) -> Any:
    """The case's records, each key's in one partition (key index % partitions), in
    their order; watermarks per partition."""
    def build() -> tuple[sl.Pipeline, list[Any]]:
        pipeline = sl.Pipeline("windows", batch_size=1,
                               channel_capacity=case.channel_capacity)
        parts: list[list[Any]] = [[] for _ in range(partitions)]
        for rec in case.records:
            parts[WINDOW_KEYS.index(rec.key) % partitions].append(rec.value)
        outputs, _, _ = test_windows.build(pipeline, pipeline.from_partitions(parts), case)
        return pipeline, outputs
    return build


@examples(6)
@given(case=cases(any_assigner, keys=WINDOW_KEYS), partitions=st.integers(1, 6))
def test_windows_over_partitions_fire_the_same_on_three_workers(case: Case,
                                                                partitions: int) -> None:
    """Partitions read by different workers interleave differently; with a bound
    beyond the disorder no record is late, so each window fires once with all its
    records, each key's windows in the order of their ends: the oracle's firings,
    key by key, on one and three workers."""
    case = replace(case, bound=case.disorder + 1)
    runs = both(partitioned_build(case, partitions))
    key = lambda o: o[0]  # noqa: E731
    same(runs, key)
    oracle = WindowOracle(case).run()
    assert not oracle.late
    assert_same_output([e.output for e in oracle.emitted], runs[1], key=key,
                       names=("oracle", "workers=3"))


# -- test_event_time: keyed state and event-time timers ------------------------------------


@examples(6)
@given(stream=event_streams(), fn=timer_fns())
def test_event_time_timers_fire_the_same_on_three_workers(stream: EventStream,
                                                          fn: TimerFn) -> None:
    """Counts, timers and the watermark each record sees: each key's outputs (with
    timestamps) in the oracle's order, on one and three workers."""
    runs = both(lambda: test_event_time.counter_pipeline(stream, fn))
    key = lambda out: out[0][1]  # noqa: E731  # (value, timestamp), value[1] the key
    same(runs, key)
    assert_same_output(run_pipeline(stream, fn).out, runs[1], key=key,
                       names=("oracle", "workers=3"))


# -- test_joins: interval joins, window joins, window_all ----------------------------------

rows = test_joins.keyed_records(WINDOW_KEYS, max_size=20)


@examples()
@given(left=rows, right=rows, lower=st.integers(-20, 10), width=st.integers(0, 20))
def test_interval_join_joins_the_same_on_three_workers(left: list[Any], right: list[Any],
                                                       lower: int, width: int) -> None:
    runs = both(lambda: test_joins.interval_join_pipeline(left, right, lower, lower + width))
    same(runs)
    assert Counter(runs[1]) == test_joins.interval_pairs(left, right, lower, lower + width)


@examples()
@given(left=rows, right=rows, size=st.integers(1, 30))
def test_window_join_and_co_group_join_the_same_on_three_workers(
        left: list[Any], right: list[Any], size: int) -> None:
    runs = both(lambda: test_joins.window_join_pipeline(left, right, size))
    same(runs)
    test_joins.check_window_join(left, right, size, *runs[1])


@examples(4)
@given(rows=rows, size=st.integers(1, 30))
def test_window_all_counts_the_same_on_three_workers(rows: list[Any], size: int) -> None:
    runs = both(lambda: test_joins.window_all_pipeline(rows, size))
    same(runs)
    test_joins.check_window_all(rows, size, runs[1])
