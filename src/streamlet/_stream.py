"""The Stream API: each call adds a node to the pipeline's logical graph.

Nothing runs here. A ``Stream`` is a handle on one output (the main output,
or a named side output) of one node; ``KeyedStream`` is the same handle read
through a hash edge, which is what makes the keyed operators available.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .connectors.files import FileSink
from .core.async_call import AsyncCallOperator
from .core.functions import UserFunction, check_on_error, resolve
from .core.functions_process import CoProcessFunction, KeyedProcessFunction, ProcessFunction
from .core.graph import DEAD_LETTER, Edge, Input, Node
from .core.operator import Operator, add_outputs
from .core.process import (
    CoProcessOperator,
    KeyedProcessOperator,
    ProcessOperator,
    ProcessOperatorBase,
)
from .core.reduce import ReduceOperator
from .core.stateless import (
    CollectOperator,
    FilterOperator,
    FlatMapOperator,
    KeyByOperator,
    MapOperator,
    PassThrough,
    SinkOperator,
    _UserOperator,
)
from .core.timestamps import AssignTimestampsOperator
from .core.two_phase import TwoPhaseCommitOperator, TwoPhaseCommitSink
from .errors import StreamletConfigError
from .state.backend import memory_backend
from .state.descriptors import AggregateFunction
from .time.durations import to_millis
from .time.watermarks import WatermarkStrategy
from .windows.assigners import Session, Tumbling, WindowAssigner
from .windows.evictors import Evictor
from .windows.interval_join import IntervalJoinOperator
from .windows.operator import (
    AGGREGATE,
    PROCESS,
    REDUCE,
    SessionOperator,
    TumblingOperator,
    WindowOperator,
)
from .windows.triggers import Trigger

if TYPE_CHECKING:
    from ._pipeline import Pipeline

_SYNC_OPERATORS: dict[str, type[_UserOperator]] = {
    "map": MapOperator,
    "filter": FilterOperator,
    "flat_map": FlatMapOperator,
    "key_by": KeyByOperator,
    "sink": SinkOperator,
}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


class ConnectedStreams:
    """Two keyed streams joined for one ``CoProcessFunction``."""

    def __init__(self, first: KeyedStream, second: KeyedStream) -> None:
        self._first = first
        self._second = second

    def process(self, function: CoProcessFunction, *, name: str | None = None,
                on_error: str | None = None) -> Stream:
        """``process_element1`` sees the first stream, ``process_element2`` the second;
        both share keyed state and timers per key."""
        if not isinstance(function, CoProcessFunction):
            raise StreamletConfigError(
                f"ConnectedStreams.process() takes a sl.CoProcessFunction, not {function!r}")
        first = self._first
        return first._process_node(function, CoProcessOperator,
                                   [first._input(), self._second._input()], name, on_error)


def _everything(value: Any) -> None:
    return None


class IntervalJoin:
    """``left.interval_join(right).between(lower, upper).process(fn)``."""

    def __init__(self, left: KeyedStream, right: KeyedStream) -> None:
        self._left = left
        self._right = right
        self._bounds: tuple[int, int] | None = None

    def between(self, lower: timedelta | int, upper: timedelta | int) -> IntervalJoin:
        """Both bounds inclusive, relative to the left record's timestamp; may be negative."""
        low = _signed_millis(lower, "lower")
        high = _signed_millis(upper, "upper")
        if low > high:
            raise StreamletConfigError(f"interval_join lower {low} is above upper {high}")
        self._bounds = (low, high)
        return self

    def process(self, fn: Callable[[Any, Any], Any], *, name: str | None = None,
                on_error: str | None = None) -> Stream:
        """``fn(left, right)`` for every joined pair; it returns one output, a list of
        them, or yields several (None emits nothing)."""
        if self._bounds is None:
            raise StreamletConfigError("interval_join needs between(lower, upper) first")
        if not callable(fn):
            raise StreamletConfigError(f"process() takes a function, not {fn!r}")
        left = self._left
        pipeline = left._pipeline
        graph = pipeline.graph
        node_name = graph.unique_name(name, "interval_join")
        mode = check_on_error(on_error or "fail", node_name)
        low, high = self._bounds

        def make() -> Operator:
            return IntervalJoinOperator(node_name, low, high, fn, mode,
                                        pipeline.settings.state_backend, pipeline.name)
        node = graph.add("interval_join", node_name, [left._input(), self._right._input()],
                         make_operator=make, on_error=mode)
        return Stream(pipeline, node)


def _signed_millis(value: timedelta | int, what: str) -> int:
    if isinstance(value, timedelta):
        return value // timedelta(milliseconds=1)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StreamletConfigError(f"{what} must be a timedelta or int milliseconds, not {value!r}")


class JoinBuilder:
    """``a.join(b).where(ka).equal_to(kb).window(assigner).apply(fn)``; also co_group."""

    def __init__(self, left: Stream, right: Stream, *, outer: bool) -> None:
        if not isinstance(right, Stream) or right._pipeline is not left._pipeline:
            raise StreamletConfigError("join() and co_group() take a stream of the same pipeline")
        self._left = left
        self._right = right
        self._outer = outer
        self._keys: list[Callable[[Any], Any]] = []
        self._assigner: WindowAssigner | None = None

    def where(self, key: Callable[[Any], Any]) -> JoinBuilder:
        self._keys = [key]
        return self

    def equal_to(self, key: Callable[[Any], Any]) -> JoinBuilder:
        if len(self._keys) != 1:
            raise StreamletConfigError("call where(key) before equal_to(key)")
        self._keys.append(key)
        return self

    def window(self, assigner: WindowAssigner) -> JoinBuilder:
        self._assigner = assigner
        return self

    def apply(self, fn: Callable[[Any, Any], Any], *, name: str | None = None) -> Stream:
        if len(self._keys) != 2 or self._assigner is None:
            raise StreamletConfigError(
                "a window join needs where(...), equal_to(...) and window(...) before apply")
        left_key, right_key = self._keys
        outer = self._outer
        tagged = self._left.map(lambda v: (0, v), name=None).union(
            self._right.map(lambda v: (1, v)))

        def key(pair: tuple[int, Any]) -> Any:
            return left_key(pair[1]) if pair[0] == 0 else right_key(pair[1])

        def pairs(key_value: Any, window: Any, values: list[tuple[int, Any]]) -> list[Any]:
            lefts = [v for side, v in values if side == 0]
            rights = [v for side, v in values if side == 1]
            out: list[Any] = []
            if outer:
                add_outputs(out, fn(lefts, rights))
            else:
                for left in lefts:
                    for right in rights:
                        add_outputs(out, fn(left, right))
            return out
        return tagged.key_by(key).window(self._assigner).process(
            pairs, name=name or ("co_group" if outer else "window_join"))


class WindowedStream:
    """A keyed stream cut into windows; finish it with reduce, aggregate or process."""

    def __init__(self, keyed: KeyedStream, assigner: WindowAssigner) -> None:
        self._keyed = keyed
        self._assigner = assigner
        self._trigger: Trigger | None = None
        self._evictor: Evictor | None = None
        self._lateness_ms = 0
        self._late_tag: str | None = None

    def trigger(self, trigger: Trigger) -> WindowedStream:
        """Decide when windows fire, instead of the assigner's default trigger."""
        if not isinstance(trigger, Trigger):
            raise StreamletConfigError(f"trigger() takes a sl.windows.Trigger, not {trigger!r}")
        self._trigger = trigger
        return self

    def evictor(self, evictor: Evictor) -> WindowedStream:
        """Remove records from a window before (or after) its function runs."""
        if not isinstance(evictor, Evictor):
            raise StreamletConfigError(f"evictor() takes a sl.windows.Evictor, not {evictor!r}")
        self._evictor = evictor
        return self

    def allowed_lateness(self, lateness: timedelta | int) -> WindowedStream:
        """Keep windows this long after they end; each late record re-fires its window."""
        self._lateness_ms = to_millis(lateness, "allowed_lateness")
        return self

    def side_output_late_data(self, tag: str) -> WindowedStream:
        """Records too late for every window they belong to go to side output ``tag``."""
        if not isinstance(tag, str) or not tag:
            raise StreamletConfigError(f"a side output tag is a non-empty str, not {tag!r}")
        self._late_tag = tag
        return self

    def reduce(self, fn: Callable[[Any, Any], Any],
               window_function: Callable[[Any, Any, Any], Any] | None = None, *,
               name: str | None = None, on_error: str | None = None) -> Stream:
        """Fold each window incrementally with ``fn(acc, value)``; emits
        ``WindowResult(key, window, value)``, or what ``window_function(key, window,
        value)`` returns."""
        if not callable(fn):
            raise StreamletConfigError(f"reduce() takes a function, not {fn!r}")
        return self._node(REDUCE, fn, window_function, name, on_error, "window_reduce")

    def aggregate(self, agg: AggregateFunction[Any],
                  window_function: Callable[[Any, Any, Any], Any] | None = None, *,
                  name: str | None = None, on_error: str | None = None) -> Stream:
        """Aggregate each window incrementally with an ``AggregateFunction``
        (``sl.agg.count()``, ``sl.agg.sum("amount")``, or your own)."""
        if not isinstance(agg, AggregateFunction):
            raise StreamletConfigError(
                f"aggregate() takes a sl.AggregateFunction such as sl.agg.count(), not {agg!r}")
        return self._node(AGGREGATE, agg, window_function, name, on_error, "window_aggregate")

    def process(self, fn: Callable[[Any, Any, list[Any]], Any], *, name: str | None = None,
                on_error: str | None = None) -> Stream:
        """Call ``fn(key, window, values)`` with all of a window's records when it
        fires; it returns one output, or yields several."""
        if not callable(fn):
            raise StreamletConfigError(f"process() takes a function, not {fn!r}")
        return self._node(PROCESS, fn, None, name, on_error, "window_process")

    def _node(self, kind: str, function: Any, window_function: Any, name: str | None,
              on_error: str | None, default: str) -> Stream:
        keyed = self._keyed
        pipeline = keyed._pipeline
        graph = pipeline.graph
        node_name = graph.unique_name(name, default)
        mode = check_on_error(on_error or "fail", node_name)
        assigner, trigger, evictor = self._assigner, self._trigger, self._evictor
        lateness, late_tag = self._lateness_ms, self._late_tag

        def make() -> Operator:
            backend = pipeline.settings.state_backend
            simple = (assigner.is_event_time and trigger is None and evictor is None
                      and kind != PROCESS and backend is memory_backend)
            operator: type[WindowOperator] = WindowOperator
            if simple and type(assigner) is Tumbling:
                operator = TumblingOperator
            elif simple and type(assigner) is Session and assigner.gap_fn is None:
                operator = SessionOperator
            return operator(
                node_name, assigner=assigner, trigger=trigger, evictor=evictor,
                lateness_ms=lateness, late_tag=late_tag, kind=kind, function=function,
                window_function=window_function, on_error=mode,
                state_backend=pipeline.settings.state_backend, job=pipeline.name)
        make()  # check the combination now, not when the job starts
        node = graph.add("window", node_name, [keyed._input()], make_operator=make,
                         on_error=mode)
        return Stream(pipeline, node)


class Collected(list[Any]):
    """The values a bounded run delivered to ``Stream.collect()``, in arrival order.

    It is a list, emptied when a run starts and filled as the run goes.
    """


class _Outputs:
    """What every handle on a node offers: its side outputs."""

    def __init__(self, pipeline: Pipeline, node: Node, tag: str | None = None) -> None:
        self._pipeline = pipeline
        self._node = node
        self._tag = tag

    @property
    def name(self) -> str:
        """The name of the operator behind this stream."""
        return self._node.name

    def side_output(self, tag: str) -> Stream:
        """The records this operator sent to the side output ``tag``."""
        if not isinstance(tag, str) or not tag:
            raise StreamletConfigError(f"a side output tag is a non-empty str, not {tag!r}")
        return Stream(self._pipeline, self._node, tag)

    def dead_letters(self) -> Stream:
        """Records a user function failed on, as ``sl.DeadLetter`` values.

        Filled only when the operator was given ``on_error="dead_letter"``.
        """
        if self._node.on_error != "dead_letter":
            raise StreamletConfigError(
                f"operator {self._node.name!r} has no dead-letter output; "
                "give it on_error='dead_letter' first")
        return self.side_output(DEAD_LETTER)


class Sink(_Outputs):
    """The end of a stream; its only output is the dead-letter one."""


class Stream(_Outputs):
    _edge = Edge.FORWARD

    def _input(self) -> Input:
        return Input(self._node, self._edge, self._tag)

    def _user_node(self, kind: str, fn: Any, name: str | None, on_error: str | None) -> Node:
        uf = resolve(fn, kind)
        graph = self._pipeline.graph
        node_name = graph.unique_name(name or uf.name, uf.default_name)
        mode = check_on_error(on_error or uf.on_error or "fail", node_name)
        if uf.is_async:
            def make() -> Operator:
                return AsyncCallOperator(node_name, kind, uf.call, is_async_gen=uf.is_async_gen,
                                         concurrency=uf.concurrency, ordered=uf.ordered,
                                         timeout_ms=uf.timeout_ms, on_error=mode)
        else:
            if uf.timeout_ms is not None or uf.concurrency > 1:
                raise StreamletConfigError(
                    f"operator {node_name!r}: concurrency= and timeout= apply to async "
                    "functions; this one is a plain def, called inline")
            cls = _SYNC_OPERATORS[kind]

            def make() -> Operator:
                return cls(node_name, uf.call, mode)
        return graph.add(kind, node_name, [self._input()], make_operator=make, on_error=mode)

    # -- stateless -------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], *, name: str | None = None,
            on_error: str | None = None) -> Stream:
        """One output per record: ``fn(value)``."""
        return Stream(self._pipeline, self._user_node("map", fn, name, on_error))

    def filter(self, fn: Callable[[Any], Any], *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """Keep the records for which ``fn(value)`` is true."""
        return Stream(self._pipeline, self._user_node("filter", fn, name, on_error))

    def flat_map(self, fn: Callable[[Any], Any], *, name: str | None = None,
                 on_error: str | None = None) -> Stream:
        """Zero or more outputs per record: everything ``fn(value)`` yields or returns."""
        return Stream(self._pipeline, self._user_node("flat_map", fn, name, on_error))

    def key_by(self, fn: Callable[[Any], Any], *, name: str | None = None,
               on_error: str | None = None) -> KeyedStream:
        """Partition by ``fn(value)``: str, int, float, bytes, bool, None or tuples of these."""
        return KeyedStream(self._pipeline, self._user_node("key_by", fn, name, on_error))

    def assign_timestamps(self, extractor: Callable[[Any], Any], strategy: WatermarkStrategy,
                          *, name: str | None = None, on_error: str | None = None) -> Stream:
        """Give records event time (int ms or a datetime from ``extractor``) and
        generate watermarks with ``strategy``, per source split."""
        if not isinstance(strategy, WatermarkStrategy):
            raise StreamletConfigError(
                f"assign_timestamps() takes a sl.WatermarkStrategy, not {strategy!r}")
        uf = resolve(extractor, "assign_timestamps")
        if uf.is_async:
            raise StreamletConfigError("a timestamp extractor must be a plain def, not async")
        graph = self._pipeline.graph
        node_name = graph.unique_name(name or uf.name, "assign_timestamps")
        mode = check_on_error(on_error or uf.on_error or "fail", node_name)

        def make() -> Operator:
            return AssignTimestampsOperator(node_name, uf.call, strategy, mode)
        node = graph.add("assign_timestamps", node_name, [self._input()], make_operator=make,
                         on_error=mode)
        return Stream(self._pipeline, node)

    def with_watermarks(self, strategy: WatermarkStrategy, *, name: str | None = None
                        ) -> Stream:
        """Generate watermarks with ``strategy`` from the event time the records
        already have (a Kafka source gives each record its Kafka timestamp), per
        source split (a Kafka partition), with the strategy's idleness."""
        if not isinstance(strategy, WatermarkStrategy):
            raise StreamletConfigError(
                f"with_watermarks() takes a sl.WatermarkStrategy, not {strategy!r}")
        graph = self._pipeline.graph
        node_name = graph.unique_name(name, "with_watermarks")

        def make() -> Operator:
            return AssignTimestampsOperator(node_name, None, strategy, "fail")
        node = graph.add("assign_timestamps", node_name, [self._input()], make_operator=make)
        return Stream(self._pipeline, node)

    def process(self, function: ProcessFunction, *, name: str | None = None,
                on_error: str | None = None) -> Stream:
        """Run a ``ProcessFunction`` over every record (no keyed state or timers here)."""
        if not isinstance(function, ProcessFunction):
            raise StreamletConfigError(
                f"Stream.process() takes a sl.ProcessFunction, not {function!r}; "
                "for a KeyedProcessFunction, key_by(...) first")
        return self._process_node(function, ProcessOperator, [self._input()], name, on_error)

    def _process_node(self, function: Any, operator: type[ProcessOperatorBase],
                      inputs: list[Input], name: str | None, on_error: str | None) -> Stream:
        pipeline = self._pipeline
        graph = pipeline.graph
        for node in graph.nodes:
            if node.function is function:
                raise StreamletConfigError(
                    f"this {type(function).__name__} instance is already used by operator "
                    f"{node.name!r}; its state is bound to one operator, so create another "
                    "instance")
        node_name = graph.unique_name(name, _snake(type(function).__name__))
        mode = check_on_error(on_error or "fail", node_name)

        def make() -> Operator:
            settings = pipeline.settings
            return operator(node_name, function, mode, settings.state_backend, pipeline.name)
        node = graph.add("process", node_name, inputs, make_operator=make, on_error=mode)
        node.function = function
        return Stream(pipeline, node)

    def window_all(self, assigner: WindowAssigner) -> WindowedStream:
        """Windows over the whole stream, not per key (one task computes them all)."""
        return self.key_by(_everything, name=self._pipeline.graph.unique_name(
            None, "window_all")).window(assigner)

    def join(self, other: Stream) -> JoinBuilder:
        """A window join: ``a.join(b).where(ka).equal_to(kb).window(assigner).apply(fn)``
        calls ``fn(left, right)`` for every pair of the same key in the same window."""
        return JoinBuilder(self, other, outer=False)

    def co_group(self, other: Stream) -> JoinBuilder:
        """Like ``join``, but ``apply(fn)`` gets ``fn(lefts, rights)`` per key and
        window, even when one side is empty: the basis of outer joins."""
        return JoinBuilder(self, other, outer=True)

    def union(self, *others: Stream, name: str | None = None) -> Stream:
        """All records of this stream and of ``others``, interleaved."""
        if not others:
            raise StreamletConfigError("union() needs at least one other stream")
        for other in others:
            if not isinstance(other, Stream) or other._pipeline is not self._pipeline:
                raise StreamletConfigError(
                    f"union() takes streams of the same pipeline, not {other!r}")
        graph = self._pipeline.graph
        node_name = graph.unique_name(name, "union")
        node = graph.add("union", node_name, [s._input() for s in (self, *others)],
                         make_operator=lambda: PassThrough(node_name))
        return Stream(self._pipeline, node)

    # -- sinks -----------------------------------------------------------------------

    def sink(self, fn: Callable[[Any], Any] | TwoPhaseCommitSink[Any], *,
             name: str | None = None, on_error: str | None = None) -> Sink:
        """Call ``fn(value)`` for every record; ``fn`` may be sync or async. Such a
        sink is at-least-once: after a restore it sees again the records that came
        after the checkpoint. A ``TwoPhaseCommitSink`` is exactly-once."""
        if isinstance(fn, TwoPhaseCommitSink):
            if on_error is not None:
                raise StreamletConfigError(
                    "on_error= does not apply to a TwoPhaseCommitSink: a record it cannot "
                    "write fails the job, since its transaction cannot be committed in part")
            sink = fn
            return self._two_phase_node(lambda node_name: sink, name, "two_phase_sink")
        return Sink(self._pipeline, self._user_node("sink", fn, name, on_error))

    def to_files(self, directory: str | os.PathLike[str], *, format: str = "jsonl",
                 name: str | None = None) -> Sink:
        """Write every record to part files in ``directory``, exactly once with
        checkpointing on: committed part files are ``part-<n>.<format>``; files
        still being written or waiting for their checkpoint start with ``.``.
        ``format`` is ``"jsonl"`` (one JSON value per line) or ``"text"``."""
        FileSink(directory, format, "to_files")  # check the arguments now
        return self._two_phase_node(lambda node_name: FileSink(directory, format, node_name),
                                    name, "to_files")

    def to_kafka(self, topic: str, *, bootstrap_servers: str,
                 key: Callable[[Any], Any] | None = None, value_format: Any = "json",
                 key_format: Any = "str", delivery: str = "at-least-once",
                 transactional_id: str | None = None, name: str | None = None,
                 **client_options: Any) -> Sink:
        """Write every record to ``topic``: its value as ``value_format`` (``"json"``,
        ``"str"``, ``"bytes"`` or a function returning bytes), keyed by ``key(record)``
        (as ``key_format``), with the record's event time as the Kafka timestamp.

        ``delivery="at-least-once"`` waits for every acknowledgement at each
        checkpoint. ``"exactly-once"`` writes one Kafka transaction per checkpoint,
        committed when the checkpoint completes, under ``transactional_id``
        (default ``streamlet-<pipeline>-<sink name>``: stable across restarts, and
        unique per job). Other keyword arguments go to aiokafka's producer."""
        if delivery not in ("at-least-once", "exactly-once"):
            raise StreamletConfigError(
                f"to_kafka(delivery={delivery!r}): use 'at-least-once' or 'exactly-once'")
        if transactional_id is not None and delivery != "exactly-once":
            raise StreamletConfigError(
                "to_kafka(transactional_id=...) is for delivery='exactly-once'")
        # aiokafka loads only for jobs that use Kafka (it is a quarter of `import streamlet`)
        from .connectors.kafka import KafkaSinkOperator, serializer  # noqa: PLC0415
        from .connectors.kafka_exactly_once import ExactlyOnceKafkaSink  # noqa: PLC0415

        serializer(value_format, "value_format")  # check the arguments now
        serializer(key_format, "key_format")
        graph = self._pipeline.graph
        node_name = graph.unique_name(name, "to_kafka")
        txn_id = transactional_id or f"streamlet-{self._pipeline.name}-{node_name}"

        def make() -> Operator:
            if delivery == "exactly-once":
                return ExactlyOnceKafkaSink(node_name, topic, bootstrap_servers, key,
                                            value_format, key_format, txn_id, client_options)
            return KafkaSinkOperator(node_name, topic, bootstrap_servers, key, value_format,
                                     key_format, client_options)
        node = graph.add("sink", node_name, [self._input()], make_operator=make)
        return Sink(self._pipeline, node)

    def _two_phase_node(self, make_sink: Callable[[str], TwoPhaseCommitSink[Any]],
                        name: str | None, default: str) -> Sink:
        graph = self._pipeline.graph
        node_name = graph.unique_name(name, default)

        def make() -> Operator:
            return TwoPhaseCommitOperator(node_name, make_sink(node_name))
        node = graph.add("sink", node_name, [self._input()], make_operator=make)
        return Sink(self._pipeline, node)

    def collect(self, *, name: str | None = None) -> Collected:
        """A list that the run fills with every value of this stream."""
        graph = self._pipeline.graph
        node_name = graph.unique_name(name, "collect")
        target = Collected()

        def make() -> Operator:
            target.clear()
            return CollectOperator(node_name, target)
        graph.add("sink", node_name, [self._input()], make_operator=make, collected=target)
        return target


class KeyedStream(Stream):
    """A stream partitioned by key: keyed operators see one key's records in order."""

    _edge = Edge.HASH

    def process(self, function: KeyedProcessFunction | ProcessFunction, *,
                name: str | None = None, on_error: str | None = None) -> Stream:
        """Run a ``KeyedProcessFunction``: keyed state, timers, side outputs."""
        if not isinstance(function, (KeyedProcessFunction, ProcessFunction)):
            raise StreamletConfigError(
                f"KeyedStream.process() takes a sl.KeyedProcessFunction, not {function!r}")
        return self._process_node(function, KeyedProcessOperator, [self._input()], name,
                                  on_error)

    def window(self, assigner: WindowAssigner) -> WindowedStream:
        """Group each key's records into windows: ``sl.windows.Tumbling(size)``,
        ``Sliding(size, slide)``, ``Session(gap)``, ``Global()``, ``Count(n)``."""
        if not isinstance(assigner, WindowAssigner):
            raise StreamletConfigError(
                f"window() takes a window assigner such as sl.windows.Tumbling(60_000), "
                f"not {assigner!r}")
        return WindowedStream(self, assigner)

    def interval_join(self, other: KeyedStream, lower: timedelta | int | None = None,
                      upper: timedelta | int | None = None) -> IntervalJoin:
        """Join each record with the other stream's records of the same key whose
        timestamps lie within ``[ts + lower, ts + upper]`` (set here or with ``between``)."""
        if not isinstance(other, KeyedStream) or other._pipeline is not self._pipeline:
            raise StreamletConfigError(
                "interval_join() takes a keyed stream of the same pipeline")
        join = IntervalJoin(self, other)
        if lower is not None or upper is not None:
            if lower is None or upper is None:
                raise StreamletConfigError("interval_join() needs both lower= and upper=")
            join.between(lower, upper)
        return join

    def connect(self, other: KeyedStream) -> ConnectedStreams:
        """Two keyed streams that one ``CoProcessFunction`` processes with shared state."""
        if not isinstance(other, KeyedStream) or other._pipeline is not self._pipeline:
            raise StreamletConfigError(
                "connect() takes a keyed stream of the same pipeline (key_by(...) both sides)")
        return ConnectedStreams(self, other)

    def reduce(self, fn: Callable[[Any, Any], Any], *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """A running reduce per key: emits ``fn(accumulator, value)`` for every record.

        The first record of a key is its first accumulator, as in Flink.
        """
        uf: UserFunction = resolve(fn, "reduce")
        graph = self._pipeline.graph
        node_name = graph.unique_name(name or uf.name, uf.default_name)
        mode = check_on_error(on_error or uf.on_error or "fail", node_name)
        if uf.concurrency > 1 or not uf.ordered:
            raise StreamletConfigError(
                f"operator {node_name!r}: a reduce folds each key's records one after "
                "another, so concurrency= and ordered= do not apply to it")
        if uf.timeout_ms is not None and not uf.is_async:
            raise StreamletConfigError(
                f"operator {node_name!r}: timeout= applies to async functions; "
                "this one is a plain def, called inline")

        def make() -> Operator:
            return ReduceOperator(node_name, uf.call, is_async=uf.is_async, on_error=mode,
                                  timeout_ms=uf.timeout_ms)
        node = graph.add("reduce", node_name, [self._input()], make_operator=make, on_error=mode)
        return Stream(self._pipeline, node)
