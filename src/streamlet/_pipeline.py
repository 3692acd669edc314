"""``Pipeline``: a thin builder over the graph, the planner and the runtime."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._stream import Stream
from .connectors.collections import (
    AsyncIterableReader,
    IterableReader,
    Partitions,
    PartitionsReader,
)
from .core.checkpoints import Checkpointing
from .core.graph import Graph
from .core.health import HealthEndpoint
from .core.plan import Plan, compile_graph
from .core.restart import RestartStrategy, RestartTracker
from .core.runtime import JOB_GC_THRESHOLDS, Job, JobResult, RuntimeOptions
from .core.source import Source, SourceReader
from .errors import StreamletConfigError, StreamletError
from .state.backend import StateBackendFactory, memory_backend
from .state.keys import DEFAULT_MAX_PARALLELISM
from .time.clock import Clock, SystemClock

if TYPE_CHECKING:
    from .cluster.coordinator import ClusterJob

log = logging.getLogger("streamlet")


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StreamletConfigError(f"{what} must be a positive int, got {value!r}")
    return value


_NO_RESTARTS = RestartStrategy.none()


@dataclass(frozen=True)
class _Settings:
    workers: int
    batch_size: int
    channel_capacity: int
    max_parallelism: int
    scheduling_seed: int
    clock: Clock
    state_backend: StateBackendFactory
    checkpointing: Checkpointing | None = None
    restart_strategy: RestartStrategy = _NO_RESTARTS

    def __post_init__(self) -> None:
        if not isinstance(self.restart_strategy, RestartStrategy):
            raise StreamletConfigError(
                "restart_strategy must be sl.RestartStrategy.fixed_delay(...), "
                f".exponential_backoff(...) or .none(), not {self.restart_strategy!r}")
        if self.checkpointing is not None and not isinstance(self.checkpointing, Checkpointing):
            raise StreamletConfigError(
                f"checkpointing must be sl.Checkpointing(...), not {self.checkpointing!r}")
        _positive_int(self.workers, "workers")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.channel_capacity, "channel_capacity")
        _positive_int(self.max_parallelism, "max_parallelism")
        if self.workers > self.max_parallelism:
            raise StreamletConfigError(
                f"workers={self.workers} is more than max_parallelism={self.max_parallelism}"
                ", the number of key groups that keyed state is cut into; raise "
                "max_parallelism (before the job's first checkpoint) or use fewer workers")
        if not isinstance(self.scheduling_seed, int):
            raise StreamletConfigError("scheduling_seed must be an int")
        if not isinstance(self.clock, Clock):
            raise StreamletConfigError(f"clock must be a streamlet Clock, not {self.clock!r}")
        if not callable(self.state_backend):
            raise StreamletConfigError(
                f"state_backend must be a state backend factory, not {self.state_backend!r}")
        backend_groups = getattr(self.state_backend, "max_parallelism", self.max_parallelism)
        if backend_groups != self.max_parallelism:
            raise StreamletConfigError(
                f"the state backend files state under {backend_groups} key groups but the "
                f"pipeline uses max_parallelism={self.max_parallelism}; make them equal")


def _resumes_from(job: Job | ClusterJob, options: RuntimeOptions) -> str:
    """Where the attempt after ``job`` starts, in words for the restart's log line."""
    if options.checkpointing is None:
        return "from the start: without checkpointing, no state or position is kept"
    completed = job.coordinator.completed if job.coordinator is not None else []
    if completed:
        return f"from checkpoint {completed[-1].checkpoint_id}, its latest"
    if job.restored_from is not None and options.restore_id is None:
        return f"from checkpoint {job.restored_from} again (it completed none since)"
    return "from its latest checkpoint, if it has one (this attempt completed none)"


async def _wait(clock: Clock, delay_ms: int) -> None:
    """Until the job's clock has moved ``delay_ms`` on (a ManualClock in tests)."""
    if delay_ms <= 0:
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)
    handle = clock.call_at(clock.now() + delay_ms, wake)
    try:
        await done
    finally:
        handle.cancel()


class Pipeline:
    """A dataflow job: sources, operators and sinks, built then run.

    ``batch_size`` bounds the records per batch and ``channel_capacity`` the
    batches buffered between two tasks, so a job holds at most about
    ``batch_size * channel_capacity`` records per channel. ``scheduling_seed``
    fixes which ready input a union reads next, so a run can be replayed.
    ``clock`` is the one source of processing time (``streamlet.testing.ManualClock``
    in tests); ``state_backend`` holds keyed state (in memory by default, or
    ``sl.SQLiteState(directory)`` for state larger than memory).
    ``checkpointing=sl.Checkpointing(...)`` makes state exactly-once: the job
    checkpoints as it runs and, started again, resumes from its latest
    checkpoint (docs/checkpoints.md). ``restart_strategy`` says whether a job
    that fails starts again by itself, from that checkpoint, in the same
    process (``sl.RestartStrategy``; by default it does not).
    """

    def __init__(self, name: str = "pipeline", *, workers: int = 1, batch_size: int = 1024,
                 channel_capacity: int = 8, max_parallelism: int = DEFAULT_MAX_PARALLELISM,
                 scheduling_seed: int = 0, clock: Clock | None = None,
                 state_backend: StateBackendFactory | None = None,
                 checkpointing: Checkpointing | None = None,
                 restart_strategy: RestartStrategy | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise StreamletConfigError(f"a pipeline name is a non-empty str, not {name!r}")
        self.name = name
        self.settings = _Settings(workers, batch_size, channel_capacity, max_parallelism,
                                  scheduling_seed, clock if clock is not None else SystemClock(),
                                  state_backend if state_backend is not None else memory_backend,
                                  checkpointing,
                                  restart_strategy if restart_strategy is not None
                                  else _NO_RESTARTS)
        self.graph = Graph()
        self._jobs: list[Job | ClusterJob] = []  # the runs in progress
        self._stop_requested: str | None = None  # the signal that asked the job to stop
        self._restarting = False  # a failed attempt is waiting out its restart delay
        # the module:attribute it was loaded from (streamlet run), for other processes
        self.origin: str | None = None

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {len(self.graph.nodes)} operators)"

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process gets when the pipeline travels by value: its
        shape and settings, not the runs in progress here."""
        state = dict(self.__dict__)
        state.update(_jobs=[], _stop_requested=None, _restarting=False)
        return state

    def with_workers(self, workers: int) -> Pipeline:
        """This pipeline, set to run on ``workers`` processes (``streamlet run
        --workers N``): the same object, its settings changed."""
        self.settings = replace(self.settings, workers=workers)
        return self

    # -- sources ---------------------------------------------------------------------

    def _source(self, name: str | None, default: str, make: Any) -> Stream:
        node_name = self.graph.unique_name(name, default)
        node = self.graph.add("source", node_name, [], make_source=lambda: make(node_name))
        return Stream(self, node)

    def from_iterable(self, iterable: Iterable[Any], *, name: str | None = None) -> Stream:
        """A bounded source over a list, generator or any iterable.

        The iterable is read on the event loop, so it should not block.
        """
        if not isinstance(iterable, Iterable):
            raise StreamletConfigError(f"from_iterable() takes an iterable, not {iterable!r}")
        size = self.settings.batch_size

        def make(node_name: str) -> SourceReader:
            return IterableReader(node_name, iterable, size)
        return self._source(name, "from_iterable", make)

    def from_partitions(self, partitions: Sequence[Iterable[Any]], *,
                        name: str | None = None) -> Stream:
        """A bounded source of several partitions, each a list or iterable, read
        as a Kafka topic's partitions are: each partition is a split of its own
        (watermarks per partition, see ``with_watermarks``), and with
        ``workers=N`` partition ``p`` is read by worker ``p % N``, so reading
        and parsing are spread over the workers too."""
        if isinstance(partitions, (str, bytes)) or not isinstance(partitions, Sequence) or \
                not all(isinstance(p, Iterable) for p in partitions):
            raise StreamletConfigError(
                f"from_partitions() takes a list of iterables (one per partition), not "
                f"{partitions!r:.80}")
        parts = Partitions(partitions)
        size = self.settings.batch_size

        def make(node_name: str) -> SourceReader:
            return PartitionsReader(node_name, parts, size)
        return self._source(name, "from_partitions", make)

    def from_async_iterable(self, iterable: AsyncIterable[Any], *,
                            name: str | None = None) -> Stream:
        """A source over an async iterable: bounded if it ends, unbounded if not."""
        if not isinstance(iterable, AsyncIterable):
            raise StreamletConfigError(
                f"from_async_iterable() takes an async iterable, not {iterable!r}")
        size = self.settings.batch_size

        def make(node_name: str) -> SourceReader:
            return AsyncIterableReader(node_name, iterable, size)
        return self._source(name, "from_async_iterable", make)

    def from_kafka(self, topics: str | Iterable[str], *, bootstrap_servers: str,
                   group_id: str | None = None, value_format: Any = "json",
                   key_format: Any = None, start: str | int = "earliest",
                   bounded: bool = False, dead_letter_topic: str | None = None,
                   name: str | None = None, **client_options: Any) -> Stream:
        """Read Kafka topics, one split per partition; each record's Kafka timestamp
        is its event time (``.with_watermarks(strategy)`` for watermarks).

        ``value_format``/``key_format``: ``"json"``, ``"str"``, ``"bytes"`` or a
        function of the bytes (the key is dropped unless ``key_format`` is given).
        ``start``: ``"earliest"``, ``"latest"``, ``"committed"`` (the group's
        offsets) or a timestamp in ms; a restored job starts at its checkpoint.
        ``bounded=True`` reads up to the end offsets found at start, then ends.
        Records that cannot be decoded go to ``dead_letter_topic`` (with
        headers naming topic, partition, offset and error), or fail the job.
        Other keyword arguments (``security_protocol``, ``sasl_*``,
        ``ssl_context``, ...) go to aiokafka's consumer. See docs/kafka.md.
        """
        from .connectors.kafka import KafkaSource  # noqa: PLC0415  # aiokafka: only for Kafka jobs

        source = KafkaSource(topics, bootstrap_servers=bootstrap_servers, group_id=group_id,
                             value_format=value_format, key_format=key_format, start=start,
                             bounded=bounded, dead_letter_topic=dead_letter_topic,
                             client_options=client_options)
        size = self.settings.batch_size

        def make(node_name: str) -> SourceReader:
            return source.create_reader(node_name, size)
        return self._source(name, "from_kafka", make)

    def from_source(self, source: Source, *, name: str | None = None) -> Stream:
        """Read any ``Source``: an object whose ``create_reader(name, batch_size)``
        returns a ``SourceReader`` (a fresh one for every run)."""
        if not isinstance(source, Source):
            raise StreamletConfigError(f"from_source() takes a streamlet Source, not {source!r}")
        size = self.settings.batch_size

        def make(node_name: str) -> SourceReader:
            return source.create_reader(node_name, size)
        return self._source(name, type(source).__name__.lower(), make)

    # -- running ---------------------------------------------------------------------

    def plan(self) -> Plan:
        """The physical plan this pipeline runs as (``plan().describe()`` prints it)."""
        return compile_graph(self.graph)

    def _options(self) -> RuntimeOptions:
        s = self.settings
        return RuntimeOptions(s.batch_size, s.channel_capacity, s.max_parallelism,
                              s.scheduling_seed, s.clock, self.name, s.checkpointing)

    async def run_async(self, *, from_checkpoint: int | None = None) -> JobResult:
        """Run inside a running event loop until every bounded input has ended.

        Cancelling the awaiting task cancels the job and every task in it. With
        checkpointing on, the job resumes from its latest checkpoint, or from
        the checkpoint or savepoint ``from_checkpoint`` (an id in its storage).
        """
        options = self._options()
        if from_checkpoint is not None:
            if options.checkpointing is None:
                raise StreamletConfigError(
                    f"from_checkpoint={from_checkpoint}: the pipeline has no checkpoint "
                    "storage to read it from; give it checkpointing=sl.Checkpointing(...)")
            options = replace(options, restore_id=from_checkpoint)
        tracker = RestartTracker(self.settings.restart_strategy)
        clock = options.clock
        while True:
            job: Job | ClusterJob
            if self.settings.workers > 1:
                from .cluster.coordinator import ClusterJob  # noqa: PLC0415  # workers only

                job = ClusterJob(self, options)
            else:
                job = Job(self.plan(), options)
            self._jobs.append(job)
            began = clock.now()
            try:
                return replace(await job.run(), restarts=tracker.restarts)
            except StreamletConfigError:
                raise  # a mistake in the pipeline: no restart can fix it
            except Exception as exc:
                if job.stopping or getattr(exc, "config_error", False):
                    raise  # (a worker's StreamletConfigError, too)
                delay = tracker.next_delay(clock.now() - began)
                if delay is None:
                    if tracker.strategy.kind != "none":
                        exc.add_note(f"job {self.name!r} failed after {tracker.restarts} "
                                     f"restarts; its restart strategy ({tracker.strategy}) "
                                     "allows no more")
                    raise
                log.warning("job %r failed (%s: %s); restart %d in %d ms, %s", self.name,
                            type(exc).__name__, exc, tracker.restarts, delay,
                            _resumes_from(job, options))
            finally:
                self._jobs.remove(job)
            self._restarting = True
            try:
                await _wait(clock, delay)
            finally:
                self._restarting = False
            options = replace(options, restore_id=None)  # the latest checkpoint now

    def status(self) -> dict[str, Any]:
        """What an orchestrator or a service's own health check wants to know, as
        plain data: ``state`` is ``"not running"``, ``"starting"`` (restoring,
        opening its tasks), ``"running"``, ``"stopping"`` or ``"restarting"``
        (a failed attempt waiting out its restart delay); ``ready`` is true
        while it runs; ``live`` in all but ``"not running"``; plus the
        checkpoint it resumed from and the last one it completed; with
        ``workers=N``, each worker's pid, heartbeats and the records that
        entered its channels so far (as of its last heartbeat)."""
        job = self._jobs[-1] if self._jobs else None
        if job is None:
            state = "restarting" if self._restarting else "not running"
        elif job.stopping:
            state = "stopping"
        elif not job.running.is_set():
            state = "starting"
        else:
            state = "running"
        completed = [] if job is None or job.coordinator is None else job.coordinator.completed
        last = completed[-1] if completed else None
        workers = job.worker_status() if job is not None and not isinstance(job, Job) else []
        return {
            "job": self.name, "state": state, "ready": state == "running",
            "live": state in ("starting", "running", "stopping", "restarting"),
            "restored_from": None if job is None else job.restored_from,
            "checkpoints_completed": len(completed),
            "last_checkpoint": None if last is None else {
                "id": last.checkpoint_id, "kind": last.kind, "started_at_ms": last.started_at,
                "duration_ms": last.duration_ms, "bytes": last.size},
            **({"workers": workers} if workers else {}),
        }

    def stop(self) -> None:
        """Ask the running job to stop: its sources stop reading, what is in flight
        is finished, a final checkpoint is taken, and ``run()`` returns. Started
        again, the job resumes from that checkpoint. Needs checkpointing."""
        if not self._jobs:
            raise StreamletError(f"stop(): pipeline {self.name!r} is not running")
        for job in self._jobs:
            job.stop()

    async def _main(self, from_checkpoint: int | None, stop_on_signals: bool,
                    health: HealthEndpoint | None) -> JobResult:
        if health is not None:
            await health.start()
        try:
            if stop_on_signals:
                return await self._serve(from_checkpoint)
            return await self.run_async(from_checkpoint=from_checkpoint)
        finally:
            if health is not None:
                await health.stop()

    async def _serve(self, from_checkpoint: int | None) -> JobResult:
        """``run_async``, stopping on the first SIGTERM or SIGINT (with
        checkpointing) and cancelling on the second."""
        self._stop_requested = None
        task = asyncio.ensure_future(self.run_async(from_checkpoint=from_checkpoint))
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)

        def on_signal(number: int) -> None:
            if self._stop_requested or self.settings.checkpointing is None:
                task.cancel()
                return
            self._stop_requested = signal.Signals(number).name
            log.info("job %r: %s: stopping its sources, then a final checkpoint",
                     self.name, self._stop_requested)
            self.stop()
        try:
            for number in signals:
                loop.add_signal_handler(number, on_signal, number)
        except (NotImplementedError, RuntimeError):  # no signals here (not the main thread)
            pass
        try:
            return await task
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

    async def savepoint(self) -> int:
        """Take a savepoint of the running job and wait until it is durable; its id.

        A savepoint is a checkpoint kept until deleted (``streamlet checkpoints``
        lists it); ``run(from_checkpoint=id)`` starts from it, also after the
        pipeline has changed, as long as stateful operators keep their names.
        """
        if not self._jobs:
            raise StreamletError(f"savepoint(): pipeline {self.name!r} is not running")
        job = self._jobs[-1]
        await job.running.wait()
        if job.coordinator is None:
            raise StreamletConfigError(
                "savepoint(): the pipeline has no checkpoint storage; give it "
                "checkpointing=sl.Checkpointing(...)")
        return await job.coordinator.savepoint()

    def run(self, *, from_checkpoint: int | None = None, stop_on_signals: bool = False,
            health_port: int | None = None, health_host: str = "127.0.0.1",
            health_file: str | None = None) -> JobResult:
        """Run until every bounded input has ended; uses uvloop when installed.
        ``from_checkpoint`` as for ``run_async``. With ``stop_on_signals`` (what
        ``streamlet run`` does), the first SIGTERM or SIGINT stops the job
        gracefully when it has checkpointing (see ``stop``), and the second, or
        the first without checkpointing, cancels it (``KeyboardInterrupt``).
        ``health_port`` serves ``/healthz``, ``/readyz`` and ``/`` over HTTP for
        orchestrators; ``health_file`` is a status file present while the job
        is ready (docs/kafka.md, "Running as a sidecar")."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise StreamletError(
                "Pipeline.run() was called inside a running event loop; "
                "use 'await pipeline.run_async()' there instead")
        # What exists before the job (its input data, the user's program) is set
        # aside from the garbage collector while the job runs, so that full
        # collections scan only what the job makes, not a million input records
        # every time. It is handed back to the collector when the job ends.
        # While the job runs, collections are rarer: a young generation of 700
        # objects (Python's default) is smaller than one batch makes, so every
        # young collection would promote records still in flight; and each full
        # collection walks every long-lived object, which in a job is its keyed
        # state and window contents.
        health = None
        if health_port is not None or health_file is not None:
            health = HealthEndpoint(self.status, port=health_port, host=health_host,
                                    file=health_file)
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*JOB_GC_THRESHOLDS)
        try:
            try:
                import uvloop  # noqa: PLC0415  # optional: only where the platform has it
            except ImportError:
                return asyncio.run(self._main(from_checkpoint, stop_on_signals, health))
            return uvloop.run(self._main(from_checkpoint, stop_on_signals, health))
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
