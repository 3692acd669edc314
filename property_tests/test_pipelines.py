"""Random pipelines against the plain-Python oracle.

Each property draws a program description (``strategies``), builds it as a
real pipeline here, runs it, and compares every output with what ``oracle``
computes from the same description: as lists where the order is determined,
as multisets where a union or an unordered async operator makes it depend on
scheduling.

``STREAMLET_PROPERTY_SCALE=10`` runs ten times as many examples of each.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamlet as sl
from property_tests.oracle import (
    Expected,
    dead_letters,
    evaluate,
    keyed_tail,
    last_node,
    tail_key,
    tail_record,
    tail_reduce,
    values_per_key,
)
from property_tests.strategies import (
    FLAT_MAPS,
    Apply,
    Fault,
    Impl,
    KeyedTail,
    Node,
    Output,
    Program,
    RunOptions,
    Source,
    Step,
    Union,
    dag_programs,
    impls,
    keyed_tails,
    linear_programs,
    run_options,
    small_ints,
)

TIMEOUT = 10.0  # seconds; these pipelines finish in milliseconds, so this means a hang
_SCALE = float(os.environ.get("STREAMLET_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=max(1, int(n * _SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- building a description into a pipeline ------------------------------------------


async def _pause(times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def implement(fn: Callable[..., Any], impl: Impl) -> Callable[..., Any]:
    """``fn`` as the kind of user function ``impl`` describes."""
    if impl.style == "sync":
        return fn
    wrapped: Callable[..., Any]
    if impl.style == "async_gen":
        async def gen(value: Any) -> AsyncIterator[Any]:
            for item in fn(value):
                await _pause(impl.delays(item))
                yield item
        wrapped = gen
    else:
        async def call(*args: Any) -> Any:
            await _pause(impl.delays(args[-1]))
            return fn(*args)
        wrapped = call
    if impl.decorated or impl.overlaps:
        return sl.operator(concurrency=impl.concurrency, ordered=impl.ordered)(wrapped)
    return wrapped


async def _trickle(source: Source) -> AsyncIterator[int]:
    for i, value in enumerate(source.values):
        await _pause((i + source.salt) % (source.max_delay + 1))
        yield value


def attach(stream: sl.Stream, output: Output) -> list[Any]:
    if output.kind == "collect":
        return stream.collect()
    target: list[Any] = []
    stream.sink(implement(target.append, output.impl))
    return target


@dataclass
class Built:
    pipeline: sl.Pipeline
    streams: list[Any]  # one per node of the program
    outputs: list[list[Any]]  # what each output of the program receives
    dead: dict[int, list[Any]]  # the dead letters of each faulty node


def build(program: Program, options: RunOptions, *, with_outputs: bool = True,
          on_error: str = "dead_letter") -> Built:
    """The program as a pipeline. Faulty steps get ``on_error`` and, for
    ``"dead_letter"``, a collect on their dead letters."""
    pipeline = sl.Pipeline("property", batch_size=options.batch_size,
                           channel_capacity=options.channel_capacity,
                           scheduling_seed=options.scheduling_seed)
    streams: list[Any] = []
    dead: dict[int, list[Any]] = {}
    for i, node in enumerate(program.nodes):
        if isinstance(node, Source):
            if node.is_async:
                streams.append(pipeline.from_async_iterable(_trickle(node)))
            else:
                streams.append(pipeline.from_iterable(list(node.values)))
        elif isinstance(node, Apply):
            step = node.step
            method = getattr(streams[node.parent], step.op)
            fn = implement(step.plain(), step.impl)
            if step.fault:
                stream = method(fn, name=f"n{i}", on_error=on_error)
                if on_error == "dead_letter":
                    dead[i] = stream.dead_letters().collect()
            else:
                stream = method(fn, name=f"n{i}")
            streams.append(stream)
        elif isinstance(node, Union):
            first, *rest = (streams[j] for j in node.parents)
            streams.append(first.union(*rest, name=f"n{i}"))
        else:
            raise AssertionError(node)
    outputs = [attach(streams[o.node], o) for o in program.outputs] if with_outputs else []
    return Built(pipeline, streams, outputs, dead)


def attach_tail(stream: sl.Stream, tail: KeyedTail) -> list[Any]:
    return (stream.map(lambda x: tail_record(tail, x))
            .key_by(implement(lambda r: tail_key(tail, r), tail.key_impl))
            .reduce(implement(lambda acc, v: tail_reduce(tail, acc, v), tail.reduce_impl))
            .collect())


def run(pipeline: sl.Pipeline, options: RunOptions) -> None:
    """Run to the end, failing (instead of hanging the suite) if the job never ends."""
    if options.runner == "asyncio":
        asyncio.run(asyncio.wait_for(pipeline.run_async(), TIMEOUT))
        return
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            pipeline.run()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, name="pipeline.run", daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), f"pipeline.run() did not end within {TIMEOUT} s"
    if outcome[0] is not None:
        raise outcome[0]


def check(actual: list[Any], expected: Expected, what: str) -> None:
    if expected.exact:
        assert list(actual) == expected.values, what
    else:
        assert sorted(actual) == sorted(expected.values), what


def check_outputs(program: Program, actual: list[list[Any]]) -> None:
    for i, (got, want) in enumerate(zip(actual, evaluate(program), strict=True)):
        check(got, want, f"output {i}: {program.outputs[i]}")


# -- the properties ------------------------------------------------------------------


@examples(800)
@given(program=linear_programs(), options=run_options)
def test_single_path_in_order_matches_oracle_exactly(program: Program,
                                                     options: RunOptions) -> None:
    """No union and no unordered operator: the same records in the same order."""
    built = build(program, options)
    run(built.pipeline, options)
    assert all(e.exact for e in evaluate(program))
    check_outputs(program, built.outputs)


@examples(400)
@given(program=linear_programs(max_steps=3),
       tail=keyed_tails(["list", "str"], allow_unordered=False), options=run_options)
def test_keyed_reduce_keeps_each_keys_order(program: Program, tail: KeyedTail,
                                            options: RunOptions) -> None:
    """A non-commutative reduce (list append, string concatenation) sees each key in order."""
    built = build(program, options, with_outputs=False)
    out = attach_tail(built.streams[-1], tail)
    run(built.pipeline, options)
    assert out == keyed_tail(tail, last_node(program).values)


@examples(500)
@given(program=dag_programs(max_sources=1, allow_union=False, allow_unordered=False,
                            min_outputs=2),
       options=run_options)
def test_fan_out_gives_every_consumer_every_record(program: Program,
                                                   options: RunOptions) -> None:
    """A stream read by several operators and collects sends each of them everything."""
    built = build(program, options)
    twins = [built.streams[-1].collect(), built.streams[-1].collect()]
    run(built.pipeline, options)
    expected = last_node(program)
    assert expected.exact
    check_outputs(program, built.outputs)
    for twin in twins:
        check(twin, expected, "twin collect of the last node")


@examples(800)
@given(program=dag_programs(interleaved=True), options=run_options)
def test_union_and_unordered_match_oracle_as_multisets(program: Program,
                                                       options: RunOptions) -> None:
    """Unions and unordered async operators lose the order, but no record, and add none."""
    built = build(program, options)
    run(built.pipeline, options)
    assert not evaluate(program)[0].exact
    check_outputs(program, built.outputs)


@examples(500)
@given(program=dag_programs(interleaved=True, max_nodes=5),
       tail=keyed_tails(["sum"], allow_unordered=True), options=run_options)
def test_running_sums_after_interleaving_add_up_per_key(program: Program, tail: KeyedTail,
                                                        options: RunOptions) -> None:
    """After a union or unordered operator, a running sum's values depend on the
    interleaving, but per key: one output per record, never decreasing, each
    step adding one of the key's records, and ending at the key's total."""
    built = build(program, options, with_outputs=False)
    out = attach_tail(built.streams[-1], tail)
    run(built.pipeline, options)
    check_running_sums(out, values_per_key(tail, last_node(program).values))


def check_running_sums(out: list[tuple[Any, int]], expected: dict[Any, Counter[int]]) -> None:
    """A ``sum`` tail's outputs after some interleaving of the records it got."""
    sums: dict[Any, list[int]] = {}
    for key, running in out:
        sums.setdefault(key, []).append(running)
    assert set(sums) == set(expected)
    for key, seq in sums.items():
        summands = expected[key]
        assert len(seq) == summands.total(), f"key {key!r}: one output per record"
        assert seq[-1] == sum(summands.elements()), f"key {key!r}: final accumulator"
        assert seq == sorted(seq), f"key {key!r}: a running sum of non-negatives"
        steps = Counter([seq[0], *(b - a for a, b in pairwise(seq))])
        assert steps == summands, f"key {key!r}: each output adds one record"


@examples(250)
@given(program=dag_programs(), options=run_options)
async def test_runs_replay_inside_a_running_loop(program: Program,
                                                 options: RunOptions) -> None:
    """``await run_async()`` in a running loop; the same description and seed replays
    exactly, and a pipeline over re-readable sources can be run again."""
    first = build(program, options)
    await asyncio.wait_for(first.pipeline.run_async(), TIMEOUT)
    check_outputs(program, first.outputs)
    replay = build(program, options)
    await asyncio.wait_for(replay.pipeline.run_async(), TIMEOUT)
    assert replay.outputs == first.outputs
    if not any(isinstance(n, Source) and n.is_async for n in program.nodes):
        runs = [list(out) for out in first.outputs]
        for out, spec in zip(first.outputs, program.outputs, strict=True):
            if spec.kind == "sink":
                out.clear()  # a collect empties itself when a run starts; a sink's list not
        await asyncio.wait_for(first.pipeline.run_async(), TIMEOUT)
        assert first.outputs == runs


def _check_dead_letters(program: Program, built: Built) -> None:
    for node, expected in dead_letters(program).items():
        letters = built.dead[node]
        assert all(isinstance(d, sl.DeadLetter) for d in letters)
        assert {d.operator for d in letters} <= {f"n{node}"}
        assert all(isinstance(d.error, Fault) for d in letters)
        check([d.value for d in letters], expected, f"dead letters of node {node}")


@examples(400)
@given(program=linear_programs(faults=True), options=run_options)
def test_dead_letters_hold_exactly_the_failed_records(program: Program,
                                                      options: RunOptions) -> None:
    """With ``on_error="dead_letter"`` a record a function raises on produces no
    output and one dead letter, and every other record flows on as usual."""
    built = build(program, options)
    run(built.pipeline, options)
    check_outputs(program, built.outputs)
    _check_dead_letters(program, built)


class _Errors(logging.Handler):
    """Collects what asyncio logs at ERROR, such as 'Task exception was never retrieved'."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@examples(200)
@given(program=linear_programs(faults=True), options=run_options)
def test_failing_function_fails_the_run(program: Program, options: RunOptions) -> None:
    """With ``on_error="fail"`` the run raises ``UserFunctionError`` for one of the
    records a function raises on, and runs to the end when there is none. Either
    way every task's outcome is looked at: asyncio has nothing to complain about."""
    failures = {(f"n{node}", value) for node, expected in dead_letters(program).items()
                for value in expected.values}
    errors = _Errors()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(errors)
    # Set aside every older object, so that the collection below looks only at
    # what this example made: a full collection gets slower as hypothesis runs.
    gc.freeze()
    try:
        built = build(program, options, on_error="fail")
        raised: sl.UserFunctionError | None = None
        try:
            run(built.pipeline, options)
        except sl.UserFunctionError as exc:
            raised = exc
        outputs = built.outputs
        del built
        if raised is None:
            assert not failures, "the run should have failed"
            check_outputs(program, outputs)
        else:
            assert (raised.operator, raised.record) in failures
            assert isinstance(raised.__cause__, Fault)
        del raised  # its traceback holds the job's tasks: let them go
        gc.collect()  # a task whose exception nobody read complains when collected
    finally:
        gc.unfreeze()
        asyncio_log.removeHandler(errors)
    assert errors.messages == []


@examples(150)
@given(values=st.lists(small_ints, max_size=30), fn=st.sampled_from(sorted(FLAT_MAPS)),
       param=st.integers(1, 3), fault=st.integers(2, 5), keyed=st.booleans(),
       impl=impls("flat_map", allow_unordered=False), options=run_options)
def test_flat_map_failing_midway_emits_nothing_for_that_record(
        values: list[int], fn: str, param: int, fault: int, keyed: bool, impl: Impl,
        options: RunOptions) -> None:
    """A flat_map function that yields some items and then raises: the record is a
    dead letter and none of its items go on, whether the stream is keyed or not,
    and whether the function is sync or async (as for a function that raises at once)."""
    nodes: list[Node] = [Source(tuple(values))]
    if keyed:
        nodes.append(Apply(0, Step("key_by", "mod", 2)))
    nodes.append(Apply(len(nodes) - 1, Step("flat_map", fn, param, impl, fault, midway=True)))
    program = Program(tuple(nodes), (Output(len(nodes) - 1),))
    built = build(program, options)
    run(built.pipeline, options)
    _check_dead_letters(program, built)
    check_outputs(program, built.outputs)
