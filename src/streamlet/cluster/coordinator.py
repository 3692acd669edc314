"""The coordinator of a parallel job (``workers=N``): the process that called run.

It starts the workers (``WorkerPool``), hands each the checkpoint to restore,
starts them, and drives checkpoints: every ``interval`` it triggers one on
all workers, each worker's sources put the barrier into their streams, and
each worker acknowledges with its part of the state once its barriers have
crossed every shuffle and its tasks have snapshotted. When every worker has
acknowledged, the coordinator writes one snapshot (``merge_subtasks``) and
only then tells the workers that the checkpoint is complete, which is when
their sinks commit. When every worker's tasks have ended it takes the final
checkpoint, tells them to finish, and gathers their results.

A lost worker (killed, exited, silent past its heartbeat timeout, or failed)
ends this attempt with its error after every worker has stopped; the
pipeline's restart strategy then decides whether a new attempt starts from
the latest complete checkpoint, with new processes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import marshal
import multiprocessing
import pickle
from collections.abc import Awaitable
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

from streamlet._locate import PipelineNotFoundError, locate
from streamlet.connectors.collections import Partitions
from streamlet.core.channels import ChannelStatistics
from streamlet.core.checkpoints import CheckpointCoordinator, Participant, _Pending
from streamlet.core.endpoint import ControlEndpoint, serve_savepoints
from streamlet.core.runtime import (
    Job,
    JobResult,
    RuntimeOptions,
    _Supervisor,
    refuse_stop_without_checkpoints,
)
from streamlet.errors import CheckpointError, StreamletConfigError
from streamlet.native import speedups
from streamlet.state.checkpoint_storage import CheckpointStorage, open_storage
from streamlet.state.snapshots import OperatorState, Snapshot, merge_subtasks
from streamlet.time.clock import SystemClock

from . import control, results
from .control import CheckpointComplete, Finish, Finished, StopJob, TriggerCheckpoint
from .workers import WorkerLostError, WorkerPool, WorkerSettings, describe_exit

if TYPE_CHECKING:
    from streamlet._pipeline import Pipeline

log = logging.getLogger("streamlet.cluster")

T = TypeVar("T")

_States = dict[str, tuple[OperatorState, int | None]]


class ClusterCheckpoints(CheckpointCoordinator):
    """Checkpoints whose participants are whole worker processes."""

    def __init__(self, *args: Any, workers: int) -> None:
        super().__init__(*args)
        self.workers = workers

    def _snapshot(self, pending: _Pending) -> Snapshot:
        """One snapshot from every worker's part (each cut by the worker)."""
        parts: list[_States] = [pending.states[f"worker {i}"]  # type: ignore[misc]
                                for i in range(self.workers)]
        bases: dict[str, int] = {}
        for part in parts:
            for name, (_, base) in part.items():
                if base is not None and bases.setdefault(name, base) != base:
                    raise CheckpointError(
                        f"checkpoint {pending.checkpoint_id}: the workers' incremental state "
                        f"of {name!r} builds on different checkpoints ({bases[name]} and "
                        f"{base})")
        operators = merge_subtasks([{name: state for name, (state, _) in part.items()}
                                    for part in parts])
        return Snapshot(pending.checkpoint_id, self.job, pending.kind, pending.started,
                        self.max_parallelism, operators, bases)


def transport(pipeline: Pipeline) -> str | list[bytes]:
    """How the pipeline reaches the worker processes: the ``module:attribute``
    they import it from, when it lives in an importable module; otherwise (a
    pipeline built in the script being run, in a function, in a test) the
    pipeline itself, pickled by value with its functions, for each worker
    apart (each gets only the ``from_partitions`` partitions it reads). A script's
    pipeline travels by value even though the script could be run again:
    names assigned under ``if __name__ == "__main__"`` would not be there."""
    try:
        target: str | None = locate(pipeline)
    except PipelineNotFoundError as exc:
        target, not_found = None, str(exc)
    else:
        if target is not None and not target.rpartition(":")[0].endswith(".py"):
            return target
        not_found = f"it lives in the script being run ({target})"
    try:
        workers = pipeline.settings.workers
        data = [_by_value(pipeline, (worker, workers)) for worker in range(workers)]
    except Exception as exc:
        if target is not None:
            return target  # the script, run again in each worker, may build it
        raise StreamletConfigError(
            f"pipeline {pipeline.name!r} cannot travel to its "
            f"{pipeline.settings.workers} worker processes. No import finds it "
            f"({not_found}), and pickling it by value failed: {type(exc).__name__}: "
            f"{exc}. Define the pipeline as a module-level name of an importable module "
            "(myjobs.py: pipeline = sl.Pipeline(...)), so each worker imports it; or keep "
            "what cannot be pickled (open files, sockets, locks, generators) out of the "
            "functions and sources it holds.") from exc
    return data


def _by_value(value: Any, share: tuple[int, int] | None = None) -> bytes:
    """cloudpickle, except that code keeps its file name, and that for worker
    ``i`` of ``n`` (``share``) partitions only come along where ``i`` reads
    them. cloudpickle writes ``<dynamic-code>`` as a code object's file name
    (for payloads that do not depend on where a function was defined), and
    then a worker's traceback would not name the user's file, nor show its
    lines; marshal keeps a code object whole."""
    import cloudpickle  # type: ignore[import-untyped]  # noqa: PLC0415  # only then

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is Partitions and share is not None:
                return Partitions, (obj.for_worker(*share),)
            if type(obj) is CodeType:
                try:
                    return marshal.loads, (marshal.dumps(obj),)
                except ValueError:  # a constant marshal cannot write: cloudpickle's way
                    pass
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


class ClusterJob:
    """One attempt at running a pipeline over worker processes."""

    def __init__(self, pipeline: Pipeline, options: RuntimeOptions) -> None:
        self.pipeline = pipeline
        self.options = options
        self.workers = pipeline.settings.workers
        self.coordinator: ClusterCheckpoints | None = None
        self.restored_from: int | None = None
        self.running = asyncio.Event()
        self.stopping = False
        self._pool: WorkerPool | None = None
        loop = asyncio.get_running_loop()
        self._finished: set[int] = set()
        self._all_finished: asyncio.Future[None] = loop.create_future()
        self._results: dict[int, tuple[JobResult, dict[str, Any]]] = {}
        self._all_results: asyncio.Future[None] = loop.create_future()
        self._supervisor: _Supervisor | None = None
        self._started = False  # the workers were told to start
        self._storage: CheckpointStorage | None = None

    # -- messages from the workers -----------------------------------------------------

    def _on_message(self, worker: int, message: Any) -> None:
        if isinstance(message, Finished):
            self._finished.add(worker)
            if len(self._finished) == self.workers and not self._all_finished.done():
                self._all_finished.set_result(None)
        elif message[0] == "ack":
            _, index, checkpoint_id, states = message
            if self.coordinator is not None:
                self.coordinator.acknowledge(checkpoint_id, f"worker {index}", states)
        elif message[0] == "result":
            _, index, result, collected = message
            self._results[index] = (result, collected)
            if len(self._results) == self.workers and not self._all_results.done():
                self._all_results.set_result(None)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> JobResult:
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            raise StreamletConfigError(
                f"pipeline {self.pipeline.name!r} (workers={self.workers}) was run while a "
                "worker process imported the script that runs it: worker processes import "
                "the main script again (the spawn start method), so run the pipeline under "
                "if __name__ == '__main__':")
        clock = type(self.options.clock).__name__
        if not isinstance(self.options.clock, SystemClock):
            raise StreamletConfigError(
                f"workers={self.workers} runs on the system clock: a {clock} cannot move "
                "time in other processes. Test with workers=1, or without the clock")
        supervisor = self._supervisor = _Supervisor()
        endpoint: ControlEndpoint | None = None
        try:
            snapshot, first_id = await self._open_storage()
            pool = await self._launch(snapshot, first_id)
            await pool.start_job()
            self._started = True
            if self.stopping:  # stop() came while the workers were starting
                await pool.send_all(StopJob())
            log.info("job %r runs on %d workers (pids %s), shuffling %s", self.options.job_name,
                     self.workers, ", ".join(str(w.pid) for w in pool.workers),
                     "in pure Python (streamlet's C speedups were not built, or "
                     "STREAMLET_PURE_PYTHON is set)" if speedups is None
                     else "with streamlet's C speedups")
            if self.coordinator is not None:
                self.coordinator.start()
                endpoint = await serve_savepoints(self.options.job_name,
                                                  self.options.checkpointing, self.coordinator)
            self.running.set()
            await self._guard(self._all_finished)
            if self.coordinator is not None:
                await self._final_checkpoint(self.coordinator)
            await pool.send_all(Finish())
            pool.expect_exit()
            await self._guard(self._results_from(pool))
        finally:
            if endpoint is not None:
                await endpoint.close()
            if self.coordinator is not None:
                self.coordinator.stop()
            await supervisor.cancel_all()
            if self._pool is not None:
                await self._pool.close()
            if self._storage is not None:
                self._storage.close()
        return self._result()

    async def _open_storage(self) -> tuple[Snapshot | None, int]:
        """The checkpoint to restore (if any) and the next checkpoint's id."""
        opts = self.options
        if opts.checkpointing is None:
            return None, 1
        storage = self._storage = open_storage(opts.checkpointing.storage_url(opts.job_name))
        log.info("job %r (%d workers) checkpoints every %d ms to %s", opts.job_name,
                 self.workers, opts.checkpointing.interval_ms, storage.url)
        planner = Job(self.pipeline.plan(), opts)
        snapshot = await asyncio.to_thread(planner._restorable, storage)
        return snapshot, await asyncio.to_thread(storage.next_id, opts.job_name)

    async def _launch(self, snapshot: Snapshot | None, first_id: int) -> WorkerPool:
        """Start the workers, give them the checkpoint, join them to checkpoints."""
        opts = self.options
        self._pool = pool = await WorkerPool.launch(
            transport(self.pipeline), self.workers,
            fingerprint=control.plan_fingerprint(self.pipeline), settings=WorkerSettings(),
            max_parallelism=opts.max_parallelism, on_message=self._on_message)
        if snapshot is not None:
            for index in range(self.workers):
                await pool.send_object(index, ("restore", snapshot))
            self.restored_from = snapshot.checkpoint_id
            log.info("job %r restores %s %d onto %d workers", opts.job_name, snapshot.kind,
                     snapshot.checkpoint_id, self.workers)
        if opts.checkpointing is not None:
            assert self._storage is not None and self._supervisor is not None
            self.coordinator = ClusterCheckpoints(
                opts.job_name, opts.checkpointing, self._storage, opts.clock,
                opts.max_parallelism, first_id, self._supervisor.spawn, workers=self.workers)
            for index in range(self.workers):
                self.coordinator.participants.append(self._participant(index))
        return pool

    def _participant(self, index: int) -> Participant:
        pool = self._pool
        assert pool is not None and self._supervisor is not None
        spawn = self._supervisor.spawn

        async def start(checkpoint_id: int) -> None:
            await pool.send(index, TriggerCheckpoint(checkpoint_id))

        async def notify(checkpoint_id: int) -> None:
            await pool.send(index, CheckpointComplete(checkpoint_id))

        def post(action: Any) -> None:
            spawn(action(), f"to worker {index}")

        return Participant([f"worker {index}"], start, post, lambda n: {}, notify)

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``, unless a worker is lost or a checkpoint write fails first."""
        pool, supervisor = self._pool, self._supervisor
        assert pool is not None and supervisor is not None
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(pool.wait_for(lambda: False))
        failed = asyncio.ensure_future(supervisor.failed())
        try:
            await asyncio.wait({task, lost, failed}, return_when=asyncio.FIRST_COMPLETED)
            if lost.done():
                lost.result()  # raises the lost worker's error
            if failed.done():
                await supervisor.wait([])  # raises the failure
            return task.result()
        finally:
            for future in (task, lost, failed):
                future.cancel()
            await asyncio.gather(task, lost, failed, return_exceptions=True)

    async def _results_from(self, pool: WorkerPool) -> None:
        """Every worker's results. A worker told to finish may exit as it likes, but
        one that ends (killed, crashed) before it sent its results is lost: waiting
        for them would wait forever."""
        ends: dict[asyncio.Future[Any], int] = {
            asyncio.ensure_future(pool.ended(i)): i for i in range(self.workers)}
        try:
            waiting: set[asyncio.Future[Any]] = {self._all_results, *ends}
            while not self._all_results.done():
                done, waiting = await asyncio.wait(waiting,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    index = ends.get(future)
                    if index is not None and index not in self._results:
                        raise WorkerLostError(
                            index, pool.pids[index],
                            f"{describe_exit(future.result())} after it was told to finish, "
                            "before it sent its results")
        finally:
            for future in ends:
                future.cancel()

    async def _final_checkpoint(self, coordinator: ClusterCheckpoints) -> None:
        coordinator.pause()
        await self._guard(coordinator.settled())
        await self._guard(coordinator.trigger())

    def worker_status(self) -> list[dict[str, Any]]:
        """Each worker's pid, heartbeats and records so far (``Pipeline.status``)."""
        pool = self._pool
        if pool is None:
            return []
        stats = pool.statistics()
        return [{"worker": i, "pid": pid, "heartbeats": stats.heartbeats[i],
                 "records": stats.records[i]} for i, pid in enumerate(pool.pids)]

    def stop(self) -> None:
        """As ``Job.stop``: every worker stops reading; the final checkpoint follows."""
        refuse_stop_without_checkpoints(self.options)
        self.stopping = True
        pool, supervisor = self._pool, self._supervisor
        if self._started and pool is not None and supervisor is not None:
            supervisor.spawn(pool.send_all(StopJob()), "stop the workers")
        # (not started yet: run() tells them as soon as they are)

    def _result(self) -> JobResult:
        channels: dict[str, ChannelStatistics] = {}
        operators: dict[str, dict[str, int]] = {}
        collected: dict[str, list[Any]] = {}
        for index in sorted(self._results):
            result, values = self._results[index]
            for name, stats in result.channels.items():
                channels[f"{name} [worker {index}]"] = stats
            for name, counters in result.operators.items():
                merged = operators.setdefault(name, {})
                for counter, value in counters.items():
                    merged[counter] = merged.get(counter, 0) + value
            for name, packed in values.items():
                collected.setdefault(name, []).extend(results.unpack_collected(packed))
        for node in self.pipeline.graph.nodes:
            if node.collected is not None:
                node.collected[:] = collected.get(node.name, [])
        return JobResult(channels, operators,
                         [] if self.coordinator is None else list(self.coordinator.completed),
                         self.restored_from)
