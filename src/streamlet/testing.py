"""Tools for testing streamlet jobs without sleeping.

- ``ManualClock``: processing time that moves only when the test says so.
- ``FunctionHarness``: drive one process function directly, as Flink's
  operator test harness does: push records with timestamps, push watermarks,
  advance processing time, and read what came out, side outputs and state.
- ``TestSource`` and ``start``: drive a whole pipeline by hand, as Kafka
  Streams' ``TopologyTestDriver`` does, from an async test.
- ``run_collected``, ``same_output`` and ``assert_same_output``: run one
  pipeline on several worker counts (``workers=N`` processes on this machine)
  and compare what its collects received, as multisets, and key by key in
  order where a ``key`` function is given; a mismatch names what is missing,
  what is extra and the first key whose sequence differs.

Example::

    harness = FunctionHarness(Dedup(), key=lambda e: e["id"])
    harness.process({"id": 1}, timestamp=10)
    harness.watermark(100)
    assert harness.output == [{"id": 1}]

Comparing worker counts: ``build`` makes a fresh pipeline (with its sources
and functions; it travels to the workers by value, so lambdas are fine) and
returns it with its collect (or a tuple or dict of collects). The system clock
is the only one several workers can share, so results must not depend on
processing time. Across keys the order is not defined with several workers
(each worker's collected values come back one worker after another), so a
``key`` function says what must stay in order::

    def build():
        p = sl.Pipeline("sums")
        out = (p.from_iterable([(x % 10, x) for x in range(100)]).key_by(lambda r: r[0])
               .reduce(lambda a, b: (a[0], a[1] + b[1])).collect())
        return p, out

    one, three = same_output(build, workers=(1, 3), key=lambda r: r[0])
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ._pipeline import Pipeline
from .core.batch import Batch
from .core.control import MAX_WATERMARK, Watermark
from .core.functions_process import CoProcessFunction, KeyedProcessFunction, ProcessFunction
from .core.mailbox import Mailbox
from .core.operator import OperatorContext, Output
from .core.process import (
    CoProcessOperator,
    KeyedProcessOperator,
    ProcessOperator,
    ProcessOperatorBase,
)
from .core.runtime import Job, JobResult
from .core.source import Source, SourceReader
from .errors import StreamletConfigError, StreamletError
from .state.backend import StateBackendFactory, memory_backend
from .state.descriptors import descriptors_of
from .time.clock import ManualClock

__all__ = ["FunctionHarness", "ManualClock", "TestSource", "assert_same_output",
           "run_collected", "run_with_workers", "same_output", "start"]


class _Collector(Output):
    def __init__(self) -> None:
        self.records: list[tuple[Any, int | None]] = []
        self.watermarks: list[int] = []
        self.idle: list[bool] = []

    async def push(self, batch: Batch) -> None:
        ts = batch.timestamps
        self.records.extend(zip(batch.values, ts if ts is not None else [None] * len(batch),
                                strict=True))

    async def watermark(self, timestamp: int) -> None:
        self.watermarks.append(timestamp)

    async def status(self, idle: bool) -> None:
        self.idle.append(idle)

    async def end(self) -> None:
        return None


class _SideOutputs(dict[str, Output]):
    """Every tag a function uses is collected, read or not."""

    def __missing__(self, tag: str) -> Output:
        collector = self[tag] = _Collector()
        return collector

    def get(self, tag: str, default: Any = None) -> Any:
        return self[tag]


class FunctionHarness:
    """Runs one ``KeyedProcessFunction``, ``ProcessFunction`` or
    ``CoProcessFunction`` on its own, synchronously.

    ``key`` (and ``key2`` for the second input of a ``CoProcessFunction``)
    pick each record's key; without one the function runs unkeyed. The
    harness owns a private event loop, so call it from ordinary (sync) tests.
    """

    def __init__(self, function: Any, *, key: Callable[[Any], Any] | None = None,
                 key2: Callable[[Any], Any] | None = None, clock: ManualClock | None = None,
                 state_backend: StateBackendFactory | None = None,
                 name: str = "under_test") -> None:
        operator: ProcessOperatorBase
        backend = state_backend or memory_backend
        if isinstance(function, CoProcessFunction):
            if key is None or key2 is None:
                raise StreamletConfigError("a CoProcessFunction needs key= and key2=")
            operator = CoProcessOperator(name, function, "fail", backend, "harness")
        elif isinstance(function, KeyedProcessFunction):
            if key is None:
                raise StreamletConfigError("a KeyedProcessFunction needs key=")
            operator = KeyedProcessOperator(name, function, "fail", backend, "harness")
        elif isinstance(function, ProcessFunction):
            operator = ProcessOperator(name, function, "fail", backend, "harness")
        else:
            raise StreamletConfigError(
                f"FunctionHarness takes a process function, not {function!r}")
        self.function = function
        self.clock = clock if clock is not None else ManualClock()
        self._keys = (key, key2)
        self._operator = operator
        self._main = _Collector()
        self._side = _SideOutputs()
        self._mailbox = Mailbox()
        self._runner = asyncio.Runner()
        operator.wire(self._main, self._side)

        def spawn(coro: Any, name: str) -> asyncio.Task[None]:
            return asyncio.get_running_loop().create_task(coro, name=name)
        self._run(self._open(OperatorContext(spawn, 128, self.clock, self._mailbox)))

    async def _open(self, ctx: Any) -> None:
        self._operator.open(ctx)

    def _run(self, coro: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise StreamletError("FunctionHarness is synchronous; call it outside a running "
                                 "event loop (or use streamlet.testing.start for async tests)")
        return self._runner.run(coro)

    async def _then_mail(self, coro: Any) -> None:
        await coro
        await self._mailbox.run_all()

    # -- input ----------------------------------------------------------------------

    def process(self, value: Any, timestamp: int | None = None) -> None:
        """One record into the (first) input."""
        self._push(0, value, timestamp)

    def process2(self, value: Any, timestamp: int | None = None) -> None:
        """One record into the second input of a ``CoProcessFunction``."""
        self._push(1, value, timestamp)

    def _push(self, index: int, value: Any, timestamp: int | None) -> None:
        selector = self._keys[index]
        keys = None if selector is None else [selector(value)]
        batch = Batch([value], keys, None if timestamp is None else [timestamp])
        self._run(self._then_mail(self._operator.process_input(index, batch)))

    def watermark(self, timestamp: int) -> None:
        """Event time reaches ``timestamp``: due event-time timers fire."""
        self._run(self._then_mail(self._operator.on_watermark(timestamp)))

    def advance_processing_time(self, ms: int) -> None:
        """Move the clock on; due processing-time timers fire."""
        self.clock.advance(ms)
        self._run(self._mailbox.run_all())

    def end_input(self) -> None:
        """The input ends: the final watermark fires every event-time timer."""
        self.watermark(MAX_WATERMARK)

    # -- output ---------------------------------------------------------------------

    @property
    def output(self) -> list[Any]:
        """Everything emitted so far, in order."""
        return [value for value, _ in self._main.records]

    @property
    def output_with_timestamps(self) -> list[tuple[Any, int | None]]:
        return list(self._main.records)

    @property
    def watermarks(self) -> list[int]:
        """The watermarks the function passed on."""
        return list(self._main.watermarks)

    def side_output(self, tag: str) -> list[Any]:
        collector = self._side.get(tag)
        assert isinstance(collector, _Collector)
        return [value for value, _ in collector.records]

    def clear_output(self) -> None:
        self._main.records.clear()

    def state(self, name: str, key: Any) -> Any:
        """The raw value of state ``name`` for ``key`` (None when it has none)."""
        backend = self._operator.backend
        names = {d.name for d in descriptors_of(self.function).values()}
        if backend is None or name not in names:
            raise StreamletConfigError(f"the function declares no state named {name!r}")
        return backend.table(name).get(key)

    def timers(self) -> dict[str, list[tuple[Any, int]]]:
        """Pending timers, as (key, timestamp) pairs per time domain."""
        return {"event_time": self._operator.event_timers.items(),
                "processing_time": self._operator.processing_timers.items()}

    def close(self) -> None:
        try:
            self._run(self._operator.close())
        finally:
            self._runner.close()

    def __enter__(self) -> FunctionHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TestReader(SourceReader):
    def __init__(self, source: TestSource, name: str, batch_size: int) -> None:
        self.name = name
        self._source = source
        self._batch_size = batch_size
        self._position = 0

    async def next_batch(self) -> Batch | Watermark | None:
        source = self._source
        while not source._queue:
            source._arrived = asyncio.get_running_loop().create_future()
            await source._arrived
        head = source._queue[0]
        if head is None:
            return None
        if isinstance(head, Watermark):
            source._queue.popleft()
            return head
        values: list[Any] = []
        stamps: list[Any] = []
        queue = source._queue
        while queue and len(values) < self._batch_size and isinstance(queue[0], tuple):
            item = queue.popleft()
            assert isinstance(item, tuple)
            value, ts = item
            values.append(value)
            stamps.append(ts)
        timestamps = None if all(t is None for t in stamps) else stamps
        self._position += len(values)
        return Batch(values, None, timestamps)

    def position(self) -> int:
        """How many records it has delivered; the test feeds the rest after a restore."""
        return self._position

    def seek(self, position: Any) -> None:
        self._position = position


class TestSource(Source):
    """An unbounded source a test feeds by hand: records (with or without
    timestamps), watermarks, and the end of input."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._queue: deque[tuple[Any, int | None] | Watermark | None] = deque()
        self._arrived: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def add(self, value: Any, timestamp: int | None = None) -> None:
        self._queue.append((value, timestamp))
        self._wake()

    def add_all(self, values: list[Any]) -> None:
        for value in values:
            self.add(value)

    def watermark(self, timestamp: int) -> None:
        self._queue.append(Watermark(timestamp))
        self._wake()

    def end(self) -> None:
        self._queue.append(None)
        self._wake()

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return _TestReader(self, name, batch_size)

    @property
    def pending(self) -> int:
        return len(self._queue)


class RunningJob:
    """A pipeline running in the background of an async test."""

    def __init__(self, job: Job, task: asyncio.Task[Any], sources: list[TestSource]) -> None:
        self.job = job
        self.task = task
        self._sources = sources

    async def settle(self, rounds: int = 10_000) -> None:
        """Let the job run until everything fed to it has been processed."""
        quiet = 0
        for _ in range(rounds):
            await asyncio.sleep(0)
            if self.task.done():
                self.task.result()
                return
            busy = any(s._queue and s._queue[0] is not None for s in self._sources) or any(
                c.statistics().buffered for c in self.job.channels.values()) or any(
                self.job.mailboxes.values())
            quiet = 0 if busy else quiet + 1
            if quiet >= 20:
                return
        raise StreamletError("the job did not settle; is a function waiting on real I/O?")

    async def finish(self) -> None:
        """Wait for the job to end (after every TestSource was ended)."""
        await self.task

    async def checkpoint(self, kind: str = "checkpoint") -> int:
        """Take a checkpoint now (the pipeline needs ``checkpointing=``) and wait
        until it is durable; its id."""
        await self.job.running.wait()
        coordinator = self.job.coordinator
        if coordinator is None:
            raise StreamletConfigError(
                "checkpoint(): the pipeline has no checkpointing; "
                "give it Pipeline(checkpointing=sl.Checkpointing(...))")
        return await coordinator.trigger(kind)

    @property
    def restored_from(self) -> int | None:
        """The checkpoint the job resumed from, if any."""
        return self.job.restored_from


@asynccontextmanager
async def start(pipeline: Pipeline, *sources: TestSource) -> AsyncIterator[RunningJob]:
    """Run ``pipeline`` in the background; ``settle()`` after feeding ``sources``."""
    job = Job(pipeline.plan(), pipeline._options())
    task = asyncio.get_running_loop().create_task(job.run(), name=f"job {pipeline.name}")
    running = RunningJob(job, task, list(sources))
    pipeline._jobs.append(job)  # so that pipeline.savepoint() finds it
    try:
        yield running
    finally:
        pipeline._jobs.remove(job)
        if not task.done():
            task.cancel()
        await asyncio.wait((task,))
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure



# -- comparing worker counts -----------------------------------------------------------

Build = Callable[[], tuple[Pipeline, Any]]


def run_with_workers(pipeline: Pipeline, workers: int, *, timeout: float = 60.0) -> JobResult:
    """Run ``pipeline`` to its end on ``workers`` processes (1: in this one),
    from synchronous code; a run still going after ``timeout`` seconds is
    cancelled (its workers stopped) and fails the test with ``TimeoutError``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise StreamletError("run_with_workers() is synchronous; call it outside a running "
                             "event loop")
    pipeline.with_workers(workers)
    return asyncio.run(asyncio.wait_for(pipeline.run_async(), timeout))


def _copy(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return {name: list(values) for name, values in outputs.items()}
    if isinstance(outputs, tuple):
        return tuple(list(values) for values in outputs)
    if isinstance(outputs, list):
        return list(outputs)
    raise StreamletConfigError(
        "build() returns (pipeline, outputs), outputs a collect, or a tuple or dict of "
        f"collects; not {type(outputs).__name__}")


def run_collected(build: Build, workers: int, *, timeout: float = 60.0) -> Any:
    """Build a fresh pipeline with ``build()``, run it on ``workers`` processes
    and return what its collects received: a list for a collect, a tuple or dict
    of lists for a tuple or dict of them (copies, in arrival order; with several
    workers one worker's values after another's)."""
    pipeline, outputs = build()
    _copy(outputs)  # a wrong shape fails before anything is started
    run_with_workers(pipeline, workers, timeout=timeout)
    return _copy(outputs)


def same_output(build: Build, workers: Sequence[int] = (1, 3), *,
                key: Callable[[Any], Any] | None = None, timeout: float = 60.0) -> list[Any]:
    """Run ``build``'s pipeline on each worker count and assert that every run
    collected the same as the first (``assert_same_output``: as multisets, and
    with ``key`` each key's values in the same order). Returns every run's
    outputs, in the order of ``workers``, to check against an oracle too."""
    runs = [run_collected(build, n, timeout=timeout) for n in workers]
    for n, run in zip(workers[1:], runs[1:], strict=True):
        assert_same_output(runs[0], run, key=key,
                           names=(f"workers={workers[0]}", f"workers={n}"))
    return runs


class _Frozen:
    """A value made hashable for counting, printed as the value."""

    __slots__ = ("_id", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._id = _freeze(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and self._id == other._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return repr(self.value)


def _freeze(value: Any) -> Any:
    """Equal values give equal results; a list and a tuple of the same items do not."""
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("repr", type(value).__name__, repr(value))
    return value


_SHOWN = 5  # examples a mismatch message shows of each kind


def _shown(counter: Counter[_Frozen]) -> str:
    items = [f"{v!r} x{n}" if n > 1 else repr(v) for v, n in counter.most_common(_SHOWN)]
    more = len(counter) - _SHOWN
    return ", ".join(items) + (f", ... ({more} more distinct)" if more > 0 else "")


def _differences(expected: list[Any], actual: list[Any], key: Callable[[Any], Any] | None,
                 names: tuple[str, str]) -> list[str]:
    want = Counter(_Frozen(v) for v in expected)
    got = Counter(_Frozen(v) for v in actual)
    lines = []
    missing, extra = want - got, got - want
    if missing or extra:
        lines.append(f"{len(expected)} values from {names[0]}, {len(actual)} from {names[1]}")
    if missing:
        lines.append(f"  only in {names[0]} ({missing.total()}): {_shown(missing)}")
    if extra:
        lines.append(f"  only in {names[1]} ({extra.total()}): {_shown(extra)}")
    if key is None or lines:
        return lines
    sequences: tuple[dict[_Frozen, list[Any]], dict[_Frozen, list[Any]]] = ({}, {})
    for values, by_key in zip((expected, actual), sequences, strict=True):
        for v in values:
            by_key.setdefault(_Frozen(key(v)), []).append(v)
    for k, want_seq in sequences[0].items():
        got_seq = sequences[1][k]  # the same multiset, so the same keys
        if [_Frozen(v) for v in want_seq] != [_Frozen(v) for v in got_seq]:
            at = next(i for i, (a, b) in enumerate(zip(want_seq, got_seq, strict=True))
                      if _Frozen(a) != _Frozen(b))
            lines.append(f"key {k!r}: the same values in another order, first at position "
                         f"{at}: {names[0]} has {want_seq[at]!r}, {names[1]} {got_seq[at]!r}\n"
                         f"  {names[0]}: {want_seq[:at + _SHOWN]!r:.300}\n"
                         f"  {names[1]}: {got_seq[:at + _SHOWN]!r:.300}")
            break
    return lines


def assert_same_output(expected: Any, actual: Any, *, key: Callable[[Any], Any] | None = None,
                       names: tuple[str, str] = ("expected", "actual")) -> None:
    """Assert that two runs' outputs (lists, or tuples or dicts of lists, as
    ``run_collected`` returns them) hold the same values as multisets, and, with
    ``key`` (a function of an output value), each key's values in the same
    order. On a mismatch the ``AssertionError`` says, for each output that
    differs, how many values are only on one side with a few of them, or the
    first key whose order differs and where."""
    pairs: list[tuple[str, Any, Any]]
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert expected.keys() == actual.keys(), (
            f"different outputs: {sorted(expected)} and {sorted(actual)}")
        pairs = [(f"output {name!r}: ", expected[name], actual[name]) for name in expected]
    elif isinstance(expected, tuple) and isinstance(actual, tuple):
        assert len(expected) == len(actual), (
            f"{len(expected)} outputs in {names[0]}, {len(actual)} in {names[1]}")
        pairs = [(f"output {i}: ", e, a) for i, (e, a) in enumerate(zip(expected, actual,
                                                                            strict=True))]
    else:
        pairs = [("", expected, actual)]
    report = []
    for label, want, got in pairs:
        lines = _differences(list(want), list(got), key, names)
        if lines:
            report.append(label + "\n".join(lines))
    assert not report, "\n".join(report)
