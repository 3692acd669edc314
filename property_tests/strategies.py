"""Random pipeline descriptions for the property tests, and the vocabulary they use.

A description is plain, frozen data, so hypothesis can shrink it and print it
readably when a property fails. ``test_pipelines`` turns a description into a
real ``streamlet`` pipeline; ``oracle`` interprets the same description in
plain Python.

The vocabulary is a few families of small, deterministic functions, each
family taking one int parameter (``FAMILIES[op][name](param)`` is the plain
function). How an operator runs that function (a plain ``def``, an
``async def`` with some ``await asyncio.sleep(0)`` pauses, an async generator,
``@sl.operator(concurrency=..., ordered=...)``) is its :class:`Impl`.

A program is a list of nodes, each a :class:`Source`, an :class:`Apply` of one
step to an earlier node, or a :class:`Union` of earlier nodes; a node read by
several later nodes or outputs is a fan-out. Its :class:`Output` s are collects
or sinks on some of the nodes. A :class:`RunOptions` is how the pipeline is
configured and run (batch size, channel capacity, scheduling seed, runner).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# -- the vocabulary ------------------------------------------------------------------


def _mixed_key(m: int) -> Callable[[int], Any]:
    """``x % m``, but spelt as an int, a float or a bool (1, 1.0 and True are one key)."""

    def key(x: int) -> Any:
        k = x % m
        if x % 3 == 1:
            return float(k)
        if x % 3 == 2 and k in (0, 1):
            return bool(k)
        return k

    return key


def _spread(a: int) -> Callable[[int], Iterable[int]]:
    def spread(x: int) -> Iterable[int]:
        return (x + i * a for i in range(x % 3))  # a generator, not a list

    return spread


MAPS: dict[str, Callable[[int], Callable[[int], int]]] = {
    "affine": lambda a: lambda x: x * a + 1,
    "halve": lambda a: lambda x: x // 2,
    "shift": lambda a: lambda x: x + a,
    "wrap": lambda a: lambda x: x % (7 * a),
}
FILTERS: dict[str, Callable[[int], Callable[[int], bool]]] = {
    "not_multiple": lambda a: lambda x: x % a != 0,
    "multiple": lambda a: lambda x: x % a == 0,
    "below": lambda a: lambda x: x < 8 * a,
}
FLAT_MAPS: dict[str, Callable[[int], Callable[[int], Iterable[int]]]] = {
    "repeat": lambda a: lambda x: [x] * (x % 3),
    "spread": _spread,
    "pair": lambda a: lambda x: (x, x + a),
    "drop_odd": lambda a: lambda x: [] if x % 2 else [x],
}
KEYS: dict[str, Callable[[int], Callable[[int], Any]]] = {
    "mod": lambda a: lambda x: x % a,
    "text": lambda a: lambda x: f"k{x % a}",
    "bytes": lambda a: lambda x: bytes([x % a]),
    "tuple": lambda a: lambda x: (x % a, x % 2 == 0),
    "maybe_none": lambda a: lambda x: None if x % a == 0 else x % a,
    "mixed": _mixed_key,
}
REDUCES: dict[str, Callable[[int], Callable[[int, int], int]]] = {
    "sum": lambda a: lambda acc, v: acc + v,
    "max": lambda a: lambda acc, v: max(acc, v),
    "poly": lambda a: lambda acc, v: (acc * 31 + v) % 10007,  # not commutative
    "diff": lambda a: lambda acc, v: acc - v,  # not commutative
    "last": lambda a: lambda acc, v: v,
    "first": lambda a: lambda acc, v: acc,
}
FAMILIES: dict[str, dict[str, Callable[[int], Callable[..., Any]]]] = {
    "map": MAPS,
    "filter": FILTERS,
    "flat_map": FLAT_MAPS,
    "key_by": KEYS,
    "reduce": REDUCES,
}
PARAMS: dict[str, tuple[int, int]] = {
    "map": (1, 4),
    "filter": (2, 5),
    "flat_map": (1, 3),
    "key_by": (1, 4),
    "reduce": (0, 0),
}

# -- descriptions --------------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """How a user function runs: ``sync``, ``async`` or ``async_gen`` (flat_map only).

    An async function first pauses ``delays(value)`` times with
    ``await asyncio.sleep(0)``; the count depends on the value, so calls in
    flight together finish in an order that differs from their input order.
    ``decorated`` wraps it in ``@sl.operator(concurrency=..., ordered=...)``.
    """

    style: str = "sync"
    concurrency: int = 1
    ordered: bool = True
    decorated: bool = False
    salt: int = 0
    max_delay: int = 0

    def delays(self, value: Any) -> int:
        return (zlib.crc32(repr(value).encode()) + self.salt) % (self.max_delay + 1)

    @property
    def reorders(self) -> bool:
        """May this operator emit records out of their input order?"""
        return self.style != "sync" and not self.ordered

    @property
    def overlaps(self) -> bool:
        """May calls of the function overlap (so side effects happen out of order)?"""
        return self.style != "sync" and (self.concurrency > 1 or not self.ordered)


SYNC = Impl()


class Fault(ValueError):
    """What a faulty user function raises."""


def is_faulty(value: Any, fault: int) -> bool:
    return bool(fault) and isinstance(value, int) and value % fault == 1


@dataclass(frozen=True)
class Step:
    """One operator. With ``fault`` its function raises :class:`Fault` on the records
    ``x`` with ``x % fault == 1`` (for a reduce: on those values, not accumulators);
    a flat_map with ``midway`` yields its items first and raises afterwards."""

    op: str  # map, filter, flat_map, key_by or reduce
    fn: str  # a name in FAMILIES[op]
    param: int
    impl: Impl = SYNC
    fault: int = 0
    midway: bool = False

    def plain(self) -> Callable[..., Any]:
        fn = FAMILIES[self.op][self.fn](self.param)
        fault = self.fault
        if not fault:
            return fn
        if self.op == "reduce":
            def reduce_or_fail(acc: Any, value: Any) -> Any:
                if is_faulty(value, fault):
                    raise Fault(value)
                return fn(acc, value)
            return reduce_or_fail
        if self.midway:
            def fail_midway(value: Any) -> Iterable[Any]:
                yield from fn(value)
                if is_faulty(value, fault):
                    raise Fault(value)
            return fail_midway

        def call_or_fail(value: Any) -> Any:
            if is_faulty(value, fault):
                raise Fault(value)
            return fn(value)
        return call_or_fail


@dataclass(frozen=True)
class Source:
    values: tuple[int, ...]
    is_async: bool = False  # from_async_iterable over an async generator
    salt: int = 0  # the async generator pauses (i + salt) % (max_delay + 1) times before item i
    max_delay: int = 0


@dataclass(frozen=True)
class Apply:
    parent: int
    step: Step


@dataclass(frozen=True)
class Union:
    parents: tuple[int, ...]  # at least two; the same node may appear twice


Node = Source | Apply | Union


@dataclass(frozen=True)
class Output:
    node: int
    kind: str = "collect"  # or "sink": a user function appending to a list
    impl: Impl = SYNC  # the sink function's


@dataclass(frozen=True)
class Program:
    nodes: tuple[Node, ...]
    outputs: tuple[Output, ...]


@dataclass(frozen=True)
class RunOptions:
    batch_size: int = 1024
    channel_capacity: int = 8
    scheduling_seed: int = 0
    runner: str = "run"  # "run": Pipeline.run(); "asyncio": asyncio.run(run_async())


# -- strategies ----------------------------------------------------------------------

small_ints = st.integers(min_value=0, max_value=50)
inputs = st.lists(small_ints, max_size=40)

run_options = st.builds(
    RunOptions,
    # mostly small batches, so that batches really split and refill
    batch_size=st.one_of(st.integers(1, 4), st.integers(1, 50)),
    channel_capacity=st.integers(1, 4),
    scheduling_seed=st.integers(0, 2**32 - 1),
    runner=st.sampled_from(["run", "asyncio"]),
)


@st.composite
def impls(draw: st.DrawFn, op: str, *, allow_unordered: bool) -> Impl:
    """How to run a function of ``op`` (``"sink"`` for a sink function)."""
    styles = ["sync", "async"] + (["async_gen"] if op == "flat_map" else [])
    style = draw(st.sampled_from(styles))
    if style == "sync":
        return SYNC
    salt = draw(st.integers(0, 1000))
    max_delay = draw(st.integers(0, 4))
    if op == "reduce":  # a reduce awaits its async function record by record
        return Impl(style, salt=salt, max_delay=max_delay)
    concurrency = draw(st.integers(1, 5))
    ordered = draw(st.booleans()) if allow_unordered else True
    decorated = concurrency > 1 or not ordered or draw(st.booleans())
    return Impl(style, concurrency, ordered, decorated, salt, max_delay)


@st.composite
def steps(draw: st.DrawFn, op: str, *, allow_unordered: bool, faults: bool = False) -> Step:
    fn = draw(st.sampled_from(sorted(FAMILIES[op])))
    low, high = PARAMS[op]
    param = draw(st.integers(low, high))
    impl = draw(impls(op, allow_unordered=allow_unordered))
    fault = draw(st.sampled_from([0, 2, 3, 5])) if faults else 0
    return Step(op, fn, param, impl, fault)


sources = st.builds(
    Source,
    values=inputs.map(tuple),
    is_async=st.booleans(),
    salt=st.integers(0, 1000),
    max_delay=st.integers(0, 3),
)


@dataclass
class _Shape:
    """What the generator knows of a node while it builds a program."""

    keyed: bool  # a KeyedStream: reduce may follow
    in_order: bool  # its order is determined (no union or unordered operator above it)


def _next_op(draw: st.DrawFn, shape: _Shape, *, reduce_ok: bool) -> str:
    ops = ["map", "filter", "flat_map", "key_by"]
    if shape.keyed and reduce_ok:
        ops = ["reduce", "reduce", *ops]  # a key_by is mostly followed by its reduce
    return draw(st.sampled_from(ops))


@st.composite
def sink_impls(draw: st.DrawFn, *, allow_overlap: bool) -> Impl:
    """A sink function; unless ``allow_overlap``, its calls run one at a time, in order."""
    impl = draw(impls("sink", allow_unordered=allow_overlap))
    if impl.overlaps and not allow_overlap:
        return Impl(impl.style, decorated=impl.decorated, salt=impl.salt,
                    max_delay=impl.max_delay)
    return impl


def _outputs(draw: st.DrawFn, nodes: int, *, min_extra: int, allow_overlap: bool
             ) -> tuple[Output, ...]:
    """An output on the last node, and ``min_extra``.. more on any nodes (taps)."""
    picks = [nodes - 1, *draw(st.lists(st.integers(0, nodes - 1), min_size=min_extra,
                                       max_size=max(min_extra, 2)))]
    outputs = []
    for node in picks:
        if draw(st.booleans()):
            outputs.append(Output(node))
        else:
            outputs.append(Output(node, "sink", draw(sink_impls(allow_overlap=allow_overlap))))
    return tuple(outputs)


@st.composite
def linear_programs(draw: st.DrawFn, *, max_steps: int = 6, faults: bool = False) -> Program:
    """One source and a chain of sync or ordered async steps, collected at the end.

    With ``faults``, some steps' functions raise on some records.
    """
    nodes: list[Node] = [draw(sources)]
    shape = _Shape(keyed=False, in_order=True)
    for _ in range(draw(st.integers(0, max_steps))):
        op = _next_op(draw, shape, reduce_ok=True)
        step = draw(steps(op, allow_unordered=False, faults=faults))
        nodes.append(Apply(len(nodes) - 1, step))
        shape = _Shape(keyed=op == "key_by", in_order=True)
    return Program(tuple(nodes), _outputs(draw, len(nodes), min_extra=0, allow_overlap=False))


@st.composite
def dag_programs(draw: st.DrawFn, *, max_sources: int = 3, max_nodes: int = 8,
                 allow_union: bool = True, allow_unordered: bool = True,
                 min_outputs: int = 1, interleaved: bool = False) -> Program:
    """Sources, steps, fan-outs and unions, with outputs on the last node and some others.

    A reduce is only placed where its input order is determined, so that its
    running values are too. With ``interleaved``, the last node's order is not
    determined (it is or follows a union or an unordered async operator).
    """
    nodes: list[Node] = []
    shapes: list[_Shape] = []
    for _ in range(draw(st.integers(1, max_sources))):
        nodes.append(draw(sources))
        shapes.append(_Shape(keyed=False, in_order=True))
    for _ in range(draw(st.integers(1, max_nodes))):
        if allow_union and draw(st.integers(0, 3)) == 0:
            # counted back from the newest node, so shrinking makes chains
            back = draw(st.lists(st.integers(0, len(nodes) - 1), min_size=2, max_size=3))
            nodes.append(Union(tuple(len(nodes) - 1 - b for b in back)))
            shapes.append(_Shape(keyed=False, in_order=False))
            continue
        parent = len(nodes) - 1 - draw(st.integers(0, len(nodes) - 1))
        shape = shapes[parent]
        op = _next_op(draw, shape, reduce_ok=shape.in_order)
        step = draw(steps(op, allow_unordered=allow_unordered))
        nodes.append(Apply(parent, step))
        shapes.append(_Shape(keyed=op == "key_by",
                             in_order=shape.in_order and not step.impl.reorders))
    if interleaved and shapes[-1].in_order:
        if allow_union and (not allow_unordered or draw(st.booleans())):
            other = draw(st.integers(0, len(nodes) - 1))
            nodes.append(Union((len(nodes) - 1, other)))
        else:
            impl = Impl("async", draw(st.integers(2, 5)), ordered=False, decorated=True,
                        salt=draw(st.integers(0, 1000)), max_delay=draw(st.integers(1, 4)))
            nodes.append(Apply(len(nodes) - 1, Step("map", "shift", 0, impl)))
    return Program(tuple(nodes), _outputs(draw, len(nodes), min_extra=min_outputs - 1,
                                          allow_overlap=allow_unordered))


@dataclass(frozen=True)
class KeyedTail:
    """``map(to_record) -> key_by -> reduce -> collect``, appended to a program's last node."""

    kind: str  # "list" (acc + [v]), "str" (acc + "," + v) or "sum" ((key, running sum))
    modulus: int
    key_impl: Impl = SYNC
    reduce_impl: Impl = SYNC


@st.composite
def keyed_tails(draw: st.DrawFn, kinds: list[str], *, allow_unordered: bool) -> KeyedTail:
    return KeyedTail(
        draw(st.sampled_from(kinds)),
        draw(st.integers(1, 5)),
        draw(impls("key_by", allow_unordered=allow_unordered)),
        draw(impls("reduce", allow_unordered=False)),
    )
