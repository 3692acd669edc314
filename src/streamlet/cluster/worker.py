"""A worker process: its part of a parallel job, as the coordinator directs.

The worker rebuilds the pipeline (imported from its ``module:attribute``,
or unpickled where the coordinator sent it by value), says hello, and then
obeys the coordinator (``streamlet.cluster.control``):

- **Deploy**: connect a frame channel to every other worker for each
  ``key_by`` edge, and accept theirs; then report deployed.
- A pickled **restore**: the checkpoint to start from (each subtask takes
  its own key groups from it, see ``Job._restore``).
- **Start**: run the plan as subtask ``worker`` of ``workers``
  (``core.runtime.Job`` with this module's ``Exchange``).
- **TriggerCheckpoint** / **CheckpointComplete**: checkpoints, driven by the
  coordinator (``core.checkpoints.WorkerCheckpoints``).
- **StopJob**, **Finish**, **Cancel**.

When every task has ended, the worker says *finished* and waits for the
coordinator's final checkpoint and *finish*; then it sends its result (the
statistics, and what ``collect()`` gathered here) and exits with code 0. A
failure anywhere is reported with its traceback, and the worker exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import logging
import os
import pickle
import shutil
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from streamlet.core.channels import Channel
from streamlet.core.checkpoints import CheckpointCoordinator, Checkpointing, WorkerCheckpoints
from streamlet.core.graph import Edge, Node
from streamlet.core.operator import Output
from streamlet.core.runtime import JOB_GC_THRESHOLDS, Distribution, Job, JobResult
from streamlet.core.stateless import CollectOperator
from streamlet.state.snapshots import OperatorState, Snapshot
from streamlet.time.clock import Clock

from . import control, results
from .control import (
    Cancel,
    CheckpointComplete,
    Deploy,
    Deployed,
    Failure,
    Finish,
    Finished,
    Heartbeat,
    Hello,
    Message,
    Start,
    StopJob,
    TriggerCheckpoint,
)
from .frames import (
    AuthenticationError,
    ChannelError,
    FrameReceiver,
    FrameSender,
    FrameServer,
    connect,
)
from .shuffle import ShuffleOutput, pump

if TYPE_CHECKING:
    from streamlet._pipeline import Pipeline

CONTROL_SOCKET: Final = "control.sock"
MAX_STATE_FRAME: Final = 1 << 30  # a checkpoint's part, or a restore, travels as one frame
# a directory: each worker profiles its job (Start to finished) with cProfile into
# worker-<index>.prof there (benchmarks/workers.py, docs/performance.md)
PROFILE_ENV: Final = "STREAMLET_WORKER_PROFILE"


def worker_socket(index: int) -> str:
    return f"worker-{index}.sock"


def _data_channel(consumer: int, index: int, sender: int) -> str:
    return f"data {consumer}.{index} from {sender}"


@dataclass(frozen=True)
class WorkerArgs:
    """What a worker is told when it is spawned (with the secret, apart)."""

    index: int
    workers: int
    target: str | bytes  # module:attribute, or the pipeline pickled by value
    directory: str
    heartbeat_interval: float
    start_timeout: float
    # the coordinator's logging (logger name -> level, "" the root), when it set
    # logging up: the worker logs the same way, its lines marked with its index
    log_levels: dict[str, int] | None = None


def logging_to_share() -> dict[str, int] | None:
    """The levels a worker takes over, if this process configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        return None
    levels = {"": root.level}
    levels.update({name: logger.level for name, logger in logging.root.manager.loggerDict.items()
                   if isinstance(logger, logging.Logger) and logger.level})
    return levels


def _log_like_the_coordinator(index: int, levels: dict[str, int] | None) -> None:
    if levels is None:
        return
    logging.basicConfig(level=levels.get("", logging.WARNING), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker {index} %(name)s: "
                               "%(message)s")
    for name, level in levels.items():
        if name:
            logging.getLogger(name).setLevel(level)


def describe_target(target: str | list[bytes]) -> str:
    """The target as errors name it: ``'module:attribute'``, or the sizes sent."""
    if isinstance(target, str):
        return repr(target)
    sizes = [len(t) for t in target]
    each = f"{sizes[0]}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
    return f"<pipeline sent by value, {each} bytes to each worker>"


def load_target(target: str | bytes) -> Pipeline:
    if isinstance(target, bytes):
        pipeline: Pipeline = pickle.loads(target)  # from the coordinator, in the Process args
        return pipeline
    from streamlet._locate import load_pipeline  # noqa: PLC0415  # the worker only

    return load_pipeline(target)


_Send = Callable[[Message], Awaitable[None]]


def worker_main(args: WorkerArgs, secret: bytes) -> None:
    """A worker process: rebuild the pipeline, say hello, obey the coordinator."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(*JOB_GC_THRESHOLDS)
    _log_like_the_coordinator(args.index, args.log_levels)
    try:
        import uvloop  # noqa: PLC0415  # optional: only where the platform has it
    except ImportError:
        sys.exit(asyncio.run(_work(args, secret)))
    sys.exit(uvloop.run(_work(args, secret)))


class _Incoming:
    """The worker's socket: the coordinator's control channel and the other
    workers' shuffle channels arrive here, told apart by their names."""

    def __init__(self, server: FrameServer) -> None:
        self.server = server
        self.waiting: dict[str, asyncio.Future[FrameReceiver]] = {}
        self.task = asyncio.get_running_loop().create_task(self._accept())

    def expect(self, name: str) -> asyncio.Future[FrameReceiver]:
        found = self.waiting.get(name)
        if found is None:
            found = self.waiting[name] = asyncio.get_running_loop().create_future()
        return found

    async def _accept(self) -> None:
        while True:
            try:
                receiver = await self.server.accept()
            except ChannelError:
                continue  # a wrong secret: the frame layer refused it already
            future = self.expect(receiver.name)
            if future.done():
                await receiver.close()  # a second channel of one name
            else:
                future.set_result(receiver)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.server.close()
        for future in self.waiting.values():
            if future.done() and not future.cancelled():
                await future.result().close()


class Exchange(Distribution):
    """This worker's ends of the job's shuffles, and its checkpoint forwarding."""

    def __init__(self, me: int, workers: int, max_parallelism: int,
                 send_object: Callable[[Any], Awaitable[None]], send: _Send) -> None:
        self.me = me
        self.workers = workers
        self.max_parallelism = max_parallelism
        self.snapshot: Snapshot | None = None
        self.senders: dict[tuple[int, int], dict[int, FrameSender]] = {}
        self.receivers: dict[tuple[int, int], dict[int, FrameReceiver]] = {}
        self.finish = asyncio.get_running_loop().create_future()
        self._send_object = send_object
        self._send = send
        self.checkpointer: WorkerCheckpoints | None = None

    async def connect(self, pipeline: Pipeline, directory: Path, secret: bytes,
                      incoming: _Incoming) -> None:
        """Open a channel to every other worker for each shuffle, and wait for theirs."""
        edges = [(node.id, index) for node in pipeline.graph.nodes
                 for index, inp in enumerate(node.inputs) if inp.edge is Edge.HASH]
        others = [w for w in range(self.workers) if w != self.me]
        for edge in edges:
            self.senders[edge] = {
                w: await connect(directory / worker_socket(w), secret,
                                 name=_data_channel(*edge, self.me)) for w in others}
        for edge in edges:
            self.receivers[edge] = {
                w: await incoming.expect(_data_channel(*edge, w)) for w in others}

    def input_channels(self, consumer: Node, index: int, capacity: int,
                       spawn: Any) -> dict[int, Channel]:
        channels = {}
        for worker, receiver in self.receivers[(consumer.id, index)].items():
            channel = Channel(f"{consumer.inputs[index].node.name}->{consumer.name}#{index} "
                              f"from worker {worker}", capacity)
            spawn(pump(receiver, channel), f"shuffle into {consumer.name} from worker {worker}")
            channels[worker] = channel
        return channels

    def output(self, consumer: Node, index: int, local: Channel, batch_size: int) -> Output:
        return ShuffleOutput(local, self.senders[(consumer.id, index)], self.me, self.workers,
                             self.max_parallelism, batch_size)

    def checkpoints(self, job: str, config: Checkpointing, clock: Clock,
                    max_parallelism: int, spawn: Any) -> CheckpointCoordinator:
        async def forward(checkpoint_id: int,
                          states: dict[str, tuple[OperatorState, int | None]]) -> None:
            await self._send_object(("ack", self.me, checkpoint_id, states))
        self.checkpointer = WorkerCheckpoints(job, config, clock, max_parallelism, spawn,
                                              forward)
        return self.checkpointer

    async def finished(self) -> None:
        await self._send(Finished(self.me))
        await asyncio.shield(self.finish)

    async def close(self) -> None:
        for senders in self.senders.values():
            for sender in senders.values():
                await sender.close()
        for receivers in self.receivers.values():
            for receiver in receivers.values():
                await receiver.close()


async def _work(args: WorkerArgs, secret: bytes) -> int:
    directory = Path(args.directory)
    me = f"streamlet worker {args.index} (pid {os.getpid()})"
    server = await FrameServer.start(directory / worker_socket(args.index), secret,
                                     max_frame_size=MAX_STATE_FRAME)
    incoming = _Incoming(server)
    try:
        try:
            to_coordinator = await connect(directory / CONTROL_SOCKET, secret,
                                           name=f"worker {args.index}")
        except AuthenticationError as exc:
            sys.stderr.write(f"{me}: {exc}\n")
            return 3
        lock = asyncio.Lock()

        async def send(message: Message) -> None:
            async with lock:
                await to_coordinator.send(*control.encode(message))

        async def send_object(value: Any) -> None:
            frame = control.encode_object(value)
            async with lock:
                await to_coordinator.send(*frame)

        try:
            pipeline = load_target(args.target)
            fingerprint = control.plan_fingerprint(pipeline)
        except Exception as exc:
            await send(Failure(args.index, _type_name(exc), str(exc), traceback.format_exc()))
            await to_coordinator.end()
            return 1
        await send(Hello(args.index, os.getpid(), fingerprint))
        async with asyncio.timeout(args.start_timeout):
            from_coordinator = await incoming.expect("coordinator")
        worker = _Worker(args, pipeline, directory, secret, incoming, send, send_object, me)
        heartbeats = asyncio.get_running_loop().create_task(
            _beat(send, args.index, args.heartbeat_interval, worker))
        try:
            code = await worker.obey(from_coordinator)
        except Exception as exc:
            await send(Failure(args.index, _type_name(exc), str(exc), traceback.format_exc()))
            code = 1
        finally:
            heartbeats.cancel()  # before the end: no heartbeat may follow it
            with contextlib.suppress(asyncio.CancelledError, ChannelError):
                await heartbeats
            await worker.close()
            await from_coordinator.close()
            if worker.coordinator_lost:  # it cannot remove the sockets' directory now
                shutil.rmtree(directory, ignore_errors=True)
        async with lock:  # end the stream, so the coordinator knows it was meant
            with contextlib.suppress(ChannelError):
                await to_coordinator.end()
        return code
    finally:
        await incoming.close()


class _Worker:
    def __init__(self, args: WorkerArgs, pipeline: Pipeline, directory: Path, secret: bytes,
                 incoming: _Incoming, send: _Send,
                 send_object: Callable[[Any], Awaitable[None]], me: str) -> None:
        self.args = args
        self.pipeline = pipeline
        self.directory = directory
        self.secret = secret
        self.incoming = incoming
        self.send = send
        self.me = me
        self.exchange = Exchange(args.index, args.workers, pipeline.settings.max_parallelism,
                                 send_object, send)
        self.send_object = send_object
        self.job: Job | None = None
        self.running: asyncio.Task[JobResult] | None = None
        self.coordinator_lost = False
        self.profile_to = os.environ.get(PROFILE_ENV)
        self.profiler: cProfile.Profile | None = None

    async def obey(self, receiver: FrameReceiver) -> int:
        """Until finished or cancelled (0), or the coordinator is gone (1)."""
        while True:
            frame = await self._next(receiver)
            if frame is None:
                return 1
            kind, payload = frame
            if kind == control.OBJECT:
                value = control.decode_object(payload)
                if value[0] == "restore":
                    self.exchange.snapshot = value[1]
                continue
            message = control.decode(kind, payload)
            if isinstance(message, Cancel):
                return 0
            if isinstance(message, Deploy):
                if message.worker != self.args.index:
                    raise control.ControlError(f"{self.me} was deployed as worker "
                                               f"{message.worker}")
                await self.exchange.connect(self.pipeline, self.directory, self.secret,
                                            self.incoming)
                await self.send(Deployed(self.args.index))
            elif isinstance(message, Start):
                self._start()
            elif isinstance(message, TriggerCheckpoint):
                checkpointer = await self._checkpointer()
                if checkpointer is not None:
                    checkpointer.trigger_by_coordinator(message.checkpoint_id)
            elif isinstance(message, CheckpointComplete):
                checkpointer = await self._checkpointer()
                if checkpointer is not None:
                    await checkpointer.confirm(message.checkpoint_id)
            elif isinstance(message, StopJob):
                if self.job is not None:
                    self.job.stop()
            elif isinstance(message, Finish):
                return await self._finish()
            else:
                raise control.ControlError(f"{self.me} got {type(message).__name__}, which "
                                           "only workers send")

    async def _next(self, receiver: FrameReceiver) -> tuple[int, bytes] | None:
        """The next frame from the coordinator; a failed job raises here."""
        receiving = asyncio.ensure_future(receiver.receive())
        try:
            waiting: set[asyncio.Future[Any]] = {receiving}
            if self.running is not None and not self.running.done():
                waiting.add(self.running)
            while True:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if self.running in done:
                    waiting.discard(self.running)
                    self.running.result()  # a failure: raised
                    if not waiting:
                        waiting.add(receiving)
                if receiving in done:
                    break
        except BaseException:
            receiving.cancel()
            raise
        try:
            return receiving.result()
        except ChannelError as exc:
            sys.stderr.write(f"{self.me}: lost the coordinator, stopping: {exc}\n")
            self.coordinator_lost = True
            return None

    def _start(self) -> None:
        pipeline = self.pipeline
        options = replace(pipeline._options(), subtask=self.args.index,
                          parallelism=self.args.workers)
        self.job = Job(pipeline.plan(), options, self.exchange)
        gc.freeze()  # the pipeline and its input are not the job's garbage
        if self.profile_to:
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        self.running = asyncio.get_running_loop().create_task(self.job.run())

    def _end_profile(self) -> None:
        profiler, self.profiler = self.profiler, None
        if profiler is not None and self.profile_to:
            profiler.disable()
            profiler.dump_stats(Path(self.profile_to) / f"worker-{self.args.index}.prof")

    async def _checkpointer(self) -> WorkerCheckpoints | None:
        """The job's checkpoints, once it has started them."""
        job, running = self.job, self.running
        if job is None or running is None:
            return None
        started = asyncio.ensure_future(job.running.wait())
        await asyncio.wait({started, running}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if running.done() and not job.running.is_set():
            running.result()  # failed while starting: raised
        return self.exchange.checkpointer

    async def _finish(self) -> int:
        exchange, running = self.exchange, self.running
        if not exchange.finish.done():
            exchange.finish.set_result(None)
        if running is None:
            return 0
        result = await running
        self._end_profile()
        operators = self.job.operators.values() if self.job is not None else ()
        collected = {op.name: results.pack_collected(op.target) for op in operators
                     if isinstance(op, CollectOperator)}
        await self.send_object(("result", self.args.index, result, collected))
        return 0

    def records(self) -> int:
        """The records that entered this worker's channels so far."""
        job = self.job
        if job is None:
            return 0
        return sum(channel.statistics().records_sent for channel in job.all_channels())

    async def close(self) -> None:
        running = self.running
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
        await self.exchange.close()


async def _beat(send: _Send, index: int, interval: float, worker: _Worker) -> None:
    while True:
        await asyncio.sleep(interval)
        await send(Heartbeat(index, worker.records()))


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else \
        f"{cls.__module__}.{cls.__qualname__}"
