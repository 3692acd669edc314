"""The reference semantics of a program description, in plain Python.

Every node is evaluated eagerly to a list, one record after another, with no
batches, channels, tasks or event loop. A union is the concatenation of its
inputs, which is one of the interleavings the engine may produce, so where a
node's order is not determined (it is below a union or an unordered async
operator) the oracle also says so, and the test compares as multisets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from property_tests.strategies import Apply, Fault, KeyedTail, Program, Source, Step, Union


@dataclass
class Expected:
    values: list[Any]
    exact: bool  # the order is determined: compare lists, not multisets


@dataclass
class _Stream:
    values: list[Any]
    keys: list[Any] | None  # set right after a key_by
    in_order: bool
    dead: list[Any]  # the records this node's function failed on


def apply_step(step: Step, values: list[Any], keys: list[Any] | None
               ) -> tuple[list[Any], list[Any] | None, list[Any]]:
    """One operator over a whole stream: its output values, its keys if it is a
    key_by, and the records its function failed on (which produce nothing)."""
    fn = step.plain()
    if step.op == "reduce":
        assert keys is not None, "a reduce follows a key_by"
        dead: list[Any] = []
        return running_reduce(fn, keys, values, dead), None, dead
    out: list[Any] = []
    out_keys: list[Any] = []
    dead = []
    for x in values:
        try:
            if step.op == "map":
                out.append(fn(x))
            elif step.op == "filter":
                if fn(x):
                    out.append(x)
            elif step.op == "flat_map":
                out.extend(list(fn(x)))  # all of a record's items, or none if it fails
            elif step.op == "key_by":
                out_keys.append(fn(x))
                out.append(x)
            else:
                raise AssertionError(step.op)
        except Fault:
            dead.append(x)
    return out, out_keys if step.op == "key_by" else None, dead


def running_reduce(fn: Any, keys: list[Any], values: list[Any],
                   dead: list[Any] | None = None) -> list[Any]:
    """Flink's running reduce: each record emits its key's new accumulator.

    The first record of a key is its accumulator, without a call. A record the
    function fails on leaves the accumulator as it was and emits nothing.
    """
    state: dict[Any, Any] = {}
    out = []
    for key, value in zip(keys, values, strict=True):
        if key in state:
            try:
                acc = fn(state[key], value)
            except Fault:
                assert dead is not None
                dead.append(value)
                continue
        else:
            acc = value
        state[key] = acc
        out.append(acc)
    return out


def evaluate_nodes(program: Program) -> list[_Stream]:
    streams: list[_Stream] = []
    for node in program.nodes:
        if isinstance(node, Source):
            streams.append(_Stream(list(node.values), None, True, []))
        elif isinstance(node, Apply):
            parent = streams[node.parent]
            if node.step.op == "reduce":
                assert parent.in_order, "the generator only reduces streams in a fixed order"
            values, keys, dead = apply_step(node.step, parent.values, parent.keys)
            streams.append(_Stream(values, keys,
                                   parent.in_order and not node.step.impl.reorders, dead))
        elif isinstance(node, Union):
            values = [x for i in node.parents for x in streams[i].values]
            streams.append(_Stream(values, None, False, []))
        else:
            raise AssertionError(node)
    return streams


def dead_letters(program: Program) -> dict[int, Expected]:
    """For each node whose function can fail: the records it fails on."""
    streams = evaluate_nodes(program)
    return {i: Expected(streams[i].dead, streams[i].in_order)
            for i, node in enumerate(program.nodes)
            if isinstance(node, Apply) and node.step.fault}


def evaluate(program: Program) -> list[Expected]:
    """What each output of the program receives."""
    streams = evaluate_nodes(program)
    return [Expected(list(streams[out.node].values),
                     streams[out.node].in_order and not out.impl.overlaps)
            for out in program.outputs]


def last_node(program: Program) -> Expected:
    stream = evaluate_nodes(program)[-1]
    return Expected(stream.values, stream.in_order)


# -- the keyed tails -----------------------------------------------------------------


def tail_record(tail: KeyedTail, x: int) -> Any:
    """What the tail's first map makes of a value."""
    if tail.kind == "list":
        return [x]
    if tail.kind == "str":
        return str(x)
    return (abs(x) % tail.modulus, abs(x))


def tail_key(tail: KeyedTail, record: Any) -> Any:
    if tail.kind == "list":
        return record[0] % tail.modulus
    if tail.kind == "str":
        return f"k{int(record) % tail.modulus}"
    return record[0]


def tail_reduce(tail: KeyedTail, acc: Any, value: Any) -> Any:
    if tail.kind == "list":
        return acc + value
    if tail.kind == "str":
        return acc + "," + value
    return (acc[0], acc[1] + value[1])


def keyed_tail(tail: KeyedTail, values: list[Any]) -> list[Any]:
    """The tail over an input in a fixed order."""
    records = [tail_record(tail, x) for x in values]
    keys = [tail_key(tail, r) for r in records]
    return running_reduce(lambda acc, v: tail_reduce(tail, acc, v), keys, records)


def values_per_key(tail: KeyedTail, values: list[Any]) -> dict[Any, Counter[int]]:
    """For the ``sum`` tail: the multiset of summands each key receives, in any order."""
    out: dict[Any, Counter[int]] = {}
    for x in values:
        key, summand = tail_record(tail, x)
        out.setdefault(key, Counter())[summand] += 1
    return out
