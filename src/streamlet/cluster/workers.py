"""Worker processes of one job, started and watched by the coordinator.

:meth:`WorkerPool.launch` starts N processes with the *spawn* start method.
Each one (``streamlet.cluster.worker``) rebuilds the pipeline from its
``module:attribute`` target, or unpickles it where the coordinator sent it by
value, connects back, and says hello with the pipeline's fingerprint; the
coordinator refuses a worker whose pipeline is not the one it runs, then
deploys each worker (its index and key groups). What the workers report
beyond that (finished, checkpoint parts, results) goes to ``on_message``.

The job's secret (32 random bytes, made per pool) goes to each child inside
the pickled ``Process`` arguments, through the pipe multiprocessing opens to
it: never in the environment or the command line, which other users of the
machine can read. The sockets live in a directory of their own, 0700.

Control channels (``streamlet.cluster.control`` messages over
``streamlet.cluster.frames``)::

    coordinator                                  worker i
    control.sock  <------------------------------  hello, heartbeats, finished,
                                                   checkpoint parts, results, failure
                  ------------------------------>  worker-i.sock: deploy, restore,
                                                   start, checkpoint triggers and
                                                   completions, stop, finish, cancel

**Supervision.** A worker sends a heartbeat every ``heartbeat_interval``; one
that sends nothing for ``heartbeat_timeout`` (hung, or stopped), whose process
exits, or whose channel closes, is *lost*: the pool kills it, cancels the
others, and raises :class:`WorkerLostError` naming it, its pid and how it
ended (``killed by SIGKILL``, ``exited with code 1``), from whatever the
coordinator is waiting on. A worker that raised (its module did not import,
say) reports the exception first: :class:`WorkerFailedError` shows it.

**Stopping.** :meth:`WorkerPool.cancel` asks every worker to stop, waits
``cancel_grace`` for them to exit, and kills the stragglers;
:meth:`WorkerPool.close` (or leaving ``async with``) does that if it was not
done and removes the sockets. A worker whose coordinator vanishes sees its
channel close and exits; workers ignore SIGINT, which a terminal sends to the
whole process group: stopping is the coordinator's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

from streamlet.errors import StreamletConfigError, StreamletError
from streamlet.state.keys import DEFAULT_MAX_PARALLELISM, key_group_range

from . import control
from .control import (
    Cancel,
    Deploy,
    Deployed,
    Failure,
    Finished,
    Heartbeat,
    Hello,
    Message,
    Start,
)
from .frames import (
    ChannelError,
    FrameReceiver,
    FrameSender,
    FrameServer,
    PeerGoneError,
    connect,
)
from .worker import (
    CONTROL_SOCKET,
    MAX_STATE_FRAME,
    WorkerArgs,
    describe_target,
    logging_to_share,
    worker_main,
    worker_socket,
)

log = logging.getLogger(__name__)

_REPORTED_TRACEBACK = 4000  # characters of a worker's traceback shown in an error
_REAP_POLL = 0.002  # seconds between looks at a dying worker's exit code
_PEER_GONE = f"{PeerGoneError.__module__}.{PeerGoneError.__qualname__}"  # as a Failure names it


@dataclass(frozen=True)
class WorkerSettings:
    """How the coordinator starts and watches its workers; times in seconds."""

    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 30.0  # no message from a worker for this long: it is lost
    start_timeout: float = 60.0  # from spawning to hello and deployment
    cancel_grace: float = 5.0  # after cancel, before stragglers are killed

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "heartbeat_timeout", "start_timeout",
                     "cancel_grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise StreamletConfigError(f"WorkerSettings.{name} must be a positive number "
                                           f"of seconds, got {value!r}")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise StreamletConfigError(
                f"WorkerSettings.heartbeat_timeout ({self.heartbeat_timeout} s) must be longer "
                f"than heartbeat_interval ({self.heartbeat_interval} s), or every worker "
                "would be lost between two heartbeats")


class WorkerLostError(StreamletError):
    """A worker process exited, closed its channel or stopped sending heartbeats."""

    def __init__(self, worker: int, pid: int | None, reason: str) -> None:
        self.worker = worker
        self.pid = pid
        self.reason = reason
        pid_text = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"worker {worker}{pid_text} {reason}")


class WorkerFailedError(WorkerLostError):
    """A worker reported an exception (e.g. the pipeline's module did not import)."""

    def __init__(self, worker: int, pid: int | None, failure: Failure, what: str) -> None:
        self.error_type = failure.error_type
        # a mistake in the pipeline, which no restart can fix
        self.config_error = _is_config_error(failure.error_type)
        self.error_message = failure.message
        self.worker_traceback = failure.traceback
        text = failure.traceback
        if len(text) > _REPORTED_TRACEBACK:
            text = "...\n" + text[-_REPORTED_TRACEBACK:]
        super().__init__(worker, pid, f"failed {what}: "
                                      f"{failure.error_type}: {failure.message}\n"
                                      f"Traceback in the worker:\n{text.rstrip()}")


def _is_config_error(type_name: str) -> bool:
    module, _, name = type_name.rpartition(".")
    if not module.startswith("streamlet"):
        return False
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and issubclass(found, StreamletConfigError)


@dataclass(frozen=True)
class WorkerInfo:
    index: int
    pid: int
    fingerprint: str


def describe_exit(exitcode: int | None) -> str:
    """``killed by SIGKILL``, ``exited with code 1``, ``exited cleanly (code 0)``."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    if exitcode == 0:
        return "exited with code 0"
    return f"exited with code {exitcode}"


# -- the coordinator's side -----------------------------------------------------------


class _Worker:
    def __init__(self, index: int, process: BaseProcess) -> None:
        self.index = index
        self.process = process
        self.pid: int | None = process.pid
        self.receiver: FrameReceiver | None = None  # from the worker
        self.sender: FrameSender | None = None  # to the worker
        self.reader: asyncio.Task[None] | None = None
        self.hello: Hello | None = None
        self.deployed = False
        self.heartbeats = 0
        self.records = 0  # the worker's metric, from its last heartbeat
        self.lost = False  # killed, not asked to stop
        self.closed = False  # process.close() was called: exitcode below is final
        self.exitcode: int | None = None
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()


@dataclass(frozen=True)
class PoolStatistics:
    workers: int
    heartbeats: tuple[int, ...]  # received from each worker
    records: tuple[int, ...]  # into each worker's channels, as of its last heartbeat
    refused_connections: int  # to the control socket: wrong secret, unknown name, ...


class WorkerPool:
    """N worker processes of one job and the control channels to them.

    ``async with await WorkerPool.launch(target, 3, fingerprint=...) as pool:``
    """

    def __init__(self, target: str | list[bytes], workers: int, fingerprint: str,
                 settings: WorkerSettings, max_parallelism: int) -> None:
        if not isinstance(workers, int) or not 1 <= workers <= max_parallelism:
            raise StreamletConfigError(
                f"workers must be from 1 to max_parallelism ({max_parallelism}), "
                f"got {workers!r}")
        self.target = target
        self.described = describe_target(target)
        self.on_message: Callable[[int, Any], None] | None = None
        self.size = workers
        self.fingerprint = fingerprint
        self.settings = settings
        self.max_parallelism = max_parallelism
        self._secret = secrets.token_bytes(32)
        self._directory: Path | None = None
        self._server: FrameServer | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._workers: list[_Worker] = []
        self._error: WorkerLostError | StreamletConfigError | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._cancelling = False
        self._closed = False
        self._refused = 0
        self._wake: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- starting ----------------------------------------------------------------------

    @classmethod
    async def launch(cls, target: str | list[bytes], workers: int, *, fingerprint: str,
                     settings: WorkerSettings | None = None,
                     max_parallelism: int = DEFAULT_MAX_PARALLELISM,
                     on_message: Callable[[int, Any], None] | None = None) -> WorkerPool:
        """Start ``workers`` processes running ``target`` (``module:attribute``, as
        from ``streamlet._locate.locate``, or each worker's pickle of the pipeline
        by value, from ``coordinator.transport``), wait until each said hello with
        ``fingerprint`` (``control.plan_fingerprint`` of the coordinator's
        pipeline) and was deployed. On any failure every process started is
        stopped before the error is raised."""
        pool = cls(target, workers, fingerprint, settings or WorkerSettings(),
                   max_parallelism)
        pool.on_message = on_message
        try:
            await pool._launch()
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _launch(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="streamlet-"))  # 0700
        self._server = await FrameServer.start(self._directory / CONTROL_SOCKET, self._secret,
                                               max_frame_size=MAX_STATE_FRAME)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())
        context = multiprocessing.get_context("spawn")
        for index in range(self.size):
            target = self.target if isinstance(self.target, str) else self.target[index]
            args = WorkerArgs(index, self.size, target, str(self._directory),
                              self.settings.heartbeat_interval, self.settings.start_timeout,
                              logging_to_share())
            process = context.Process(target=worker_main, args=(args, self._secret),
                                      name=f"streamlet worker {index}", daemon=True)
            process.start()
            worker = _Worker(index, process)
            self._workers.append(worker)
            self._watch_exit(worker)
        try:
            await self._wait_for(lambda: all(w.sender is not None for w in self._workers),
                                 self.settings.start_timeout)
        except TimeoutError:
            late = next(w for w in self._workers if w.sender is None)
            within = f"within {self.settings.start_timeout} s (start_timeout)"
            what = (f"connected but did not say hello {within}: loading {self.described} "
                    "did not finish" if late.receiver is not None
                    else f"did not connect {within}")
            raise self._lost(late, WorkerLostError(late.index, late.pid, what)) from None
        for worker in self._workers:
            start, stop = _range(key_group_range(worker.index, self.size, self.max_parallelism))
            await self._send(worker, control.encode(
                Deploy(worker.index, self.size, self.described, start, stop)))
        try:
            await self._wait_for(lambda: all(w.deployed for w in self._workers),
                                 self.settings.start_timeout)
        except TimeoutError:
            late = next(w for w in self._workers if not w.deployed)
            raise self._lost(late, WorkerLostError(
                late.index, late.pid, f"was not deployed within {self.settings.start_timeout} "
                "s (start_timeout)")) from None

    def _watch_exit(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        sentinel = worker.process.sentinel

        def exited() -> None:
            loop.remove_reader(sentinel)
            self._spawn(self._reap(worker))

        loop.add_reader(sentinel, exited)

    async def _reap(self, worker: _Worker) -> None:
        code = await _reaped(worker)  # at once, or nearly: its sentinel is readable
        if not self._cancelling:
            when = ("before saying hello (its output above says why; a script that runs "
                    "its pipeline when imported needs if __name__ == '__main__':)"
                    if worker.hello is None else "while the job ran")
            self._lost(worker, WorkerLostError(worker.index, worker.pid,
                                               f"{describe_exit(code)} {when}"))
        self._notify()

    async def _accept(self) -> None:
        assert self._server is not None
        names = {f"worker {w}": w for w in range(self.size)}
        while True:
            try:
                receiver = await self._server.accept()
            except ChannelError as exc:  # a wrong secret, a peer gone mid-handshake
                self._refused += 1
                log.warning("refused a connection to the control socket: %s", exc)
                continue
            index = names.get(receiver.name)
            if index is None or index >= len(self._workers) or \
                    self._workers[index].receiver is not None:
                self._refused += 1
                log.warning("refused a control connection named %r: no such worker, or it "
                            "is connected already", receiver.name)
                await receiver.close()
                continue
            worker = self._workers[index]
            worker.receiver = receiver
            worker.reader = asyncio.get_running_loop().create_task(self._read(worker))

    async def _read(self, worker: _Worker) -> None:
        receiver = worker.receiver
        assert receiver is not None
        settings = self.settings
        while True:
            timeout = (settings.heartbeat_timeout if worker.hello is not None
                       else settings.start_timeout)
            try:
                async with asyncio.timeout(timeout):
                    frame = await receiver.receive()
            except TimeoutError:
                if worker.hello is None:
                    return  # launch() reports it, with the other late workers
                self._lost(worker, WorkerLostError(
                    worker.index, worker.pid,
                    f"missed its heartbeats: nothing for {timeout} s (heartbeat_timeout; one "
                    f"is sent every {settings.heartbeat_interval} s): it hangs or was stopped"))
                return
            except ChannelError as exc:
                await self._channel_gone(worker, str(exc))
                return
            if frame is None:
                if not self._cancelling:
                    await self._channel_gone(worker, "ended its control channel unasked")
                return
            if frame[0] == control.OBJECT and worker.deployed:
                if self.on_message is not None:
                    self.on_message(worker.index, control.decode_object(frame[1]))
                self._notify()
                continue
            try:
                message = control.decode(*frame)
            except control.ControlError as exc:
                self._lost(worker, WorkerLostError(worker.index, worker.pid,
                                                   f"sent a broken control message: {exc}"))
                return
            try:
                await self._handle(worker, message)
            except ChannelError as exc:  # connecting back to the worker failed
                await self._channel_gone(worker, str(exc))
                return
            self._notify()

    async def _channel_gone(self, worker: _Worker, detail: str) -> None:
        """The channel closed: most likely the process died; say how, if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.cancel_grace):
                await asyncio.shield(worker.exited)
        if self._cancelling:
            return
        code = worker.process.exitcode
        if code is not None:
            reason = f"{describe_exit(code)}; its control channel closed"
        else:
            reason = f"closed its control channel while still running ({detail})"
        self._lost(worker, WorkerLostError(worker.index, worker.pid, reason))

    async def _handle(self, worker: _Worker, message: Message) -> None:
        if isinstance(message, Heartbeat):
            worker.heartbeats += 1
            worker.records = message.records
        elif isinstance(message, Deployed):
            worker.deployed = True
        elif isinstance(message, Finished):
            if self.on_message is not None:
                self.on_message(worker.index, message)
        elif isinstance(message, Hello):
            if message.fingerprint != self.fingerprint:
                self._fail(worker, StreamletConfigError(
                    f"worker {worker.index} (pid {message.pid}) built another pipeline from "
                    f"{self.described}: plan fingerprint {message.fingerprint}, expected "
                    f"{self.fingerprint}. The module must build the same pipeline in every "
                    "process (no randomness, environment or arguments in its shape)"))
                return
            worker.pid = message.pid
            assert self._directory is not None
            worker.sender = await connect(self._directory / worker_socket(worker.index),
                                          self._secret, name="coordinator")
            worker.hello = message
        elif isinstance(message, Failure):
            if message.error_type == _PEER_GONE:
                await self._peer_exit(worker)
            what = (f"to load the pipeline {self.described}" if worker.hello is None
                    else "while running its part of the job")
            self._lost(worker, WorkerFailedError(worker.index, worker.pid, message, what))
        else:
            self._lost(worker, WorkerLostError(
                worker.index, worker.pid, f"sent {type(message).__name__}, which only the "
                "coordinator sends"))

    async def _peer_exit(self, worker: _Worker) -> None:
        """``worker`` failed because a data channel from or to another worker closed
        under it: most likely that worker died, and its death, not this failure, is
        what to report. Its socket closes as its process exits, so its exit is
        reaped (and reported first: the first failure wins) in a moment; wait for
        that, at most ``cancel_grace``."""
        others = [w.exited for w in self._workers if w is not worker]  # (never cancelled)
        if others:
            await asyncio.wait(others, timeout=self.settings.cancel_grace,
                               return_when=asyncio.FIRST_COMPLETED)

    # -- losing a worker -----------------------------------------------------------------

    def _lost(self, worker: _Worker, error: WorkerLostError) -> WorkerLostError:
        self._fail(worker, error)
        return error

    def _fail(self, worker: _Worker, error: WorkerLostError | StreamletConfigError) -> None:
        """The first failure wins: kill the worker, stop the others."""
        if self._error is None and not self._cancelling:
            self._error = error
            worker.lost = True
            log.error("%s; stopping all workers", error)
            with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
                worker.process.kill()
            self._stopping = asyncio.get_running_loop().create_task(self._stop())
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _wait_for(self, condition: Callable[[], bool], within: float | None) -> None:
        """Until ``condition()``; a lost worker raises its error once every worker stopped."""
        async with asyncio.timeout(within):
            while True:
                if self._error is not None:
                    await self._stopped()
                    raise self._error
                if condition():
                    return
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake

    async def _stopped(self) -> None:
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    # -- running -----------------------------------------------------------------------

    @property
    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(w.index, w.pid or 0, w.hello.fingerprint)
                for w in self._workers if w.hello is not None]

    @property
    def control_path(self) -> Path | None:
        """The socket workers connect to (in a 0700 directory of its own)."""
        return None if self._directory is None else self._directory / CONTROL_SOCKET

    @property
    def exit_codes(self) -> list[int | None]:
        """Each process's exit code (negative: the signal that killed it), ``None``
        while it runs."""
        return [w.exitcode if w.closed else w.process.exitcode for w in self._workers]

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self._workers]

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(self.size, tuple(w.heartbeats for w in self._workers),
                              tuple(w.records for w in self._workers), self._refused)

    async def start_job(self) -> None:
        """Tell every worker to start running its part of the job."""
        self._check()
        for worker in self._workers:
            await self._send(worker, control.encode(Start()))

    async def wait_heartbeats(self, count: int) -> None:
        """Until every worker sent at least ``count`` heartbeats."""
        await self._wait_for(lambda: all(w.heartbeats >= count for w in self._workers), None)

    async def wait_lost(self) -> WorkerLostError | StreamletConfigError:
        """Until a worker is lost and all were stopped; the error says which and how."""
        with contextlib.suppress(WorkerLostError, StreamletConfigError):
            await self._wait_for(lambda: False, None)
        assert self._error is not None
        return self._error

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()``, checked after every message; a lost worker raises."""
        await self._wait_for(condition, None)

    async def send(self, index: int, message: Message) -> None:
        self._check()
        await self._send(self._workers[index], control.encode(message))

    async def send_all(self, message: Message) -> None:
        self._check()
        frame = control.encode(message)
        for worker in self._workers:
            await self._send(worker, frame)

    async def send_object(self, index: int, value: Any) -> None:
        self._check()
        await self._send(self._workers[index], control.encode_object(value))

    def expect_exit(self) -> None:
        """The workers were told to finish: their exits are not losses."""
        self._cancelling = True

    async def ended(self, index: int) -> int | None:
        """Worker ``index``'s exit code, once everything it sent has been handled
        (its control channel ended) and its process has exited."""
        worker = self._workers[index]
        if worker.reader is not None:
            await asyncio.shield(worker.reader)
        return await asyncio.shield(worker.exited)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._cancelling or self._closed:
            raise StreamletError("the worker pool was cancelled")

    async def _send(self, worker: _Worker, frame: tuple[int, bytes]) -> None:
        assert worker.sender is not None
        try:
            await worker.sender.send(*frame)
        except ChannelError as exc:
            await self._channel_gone(worker, str(exc))
            self._check()
            raise

    # -- stopping ----------------------------------------------------------------------

    async def cancel(self) -> list[int | None]:
        """Ask every worker to stop, kill the ones still running after
        ``cancel_grace``; the exit codes (0 for a worker that stopped when asked)."""
        if not self._cancelling:
            self._cancelling = True
            await self._stop()
        else:
            await self._stopped()
        return self.exit_codes

    async def _stop(self) -> None:
        self._cancelling = True
        self._notify()
        for worker in self._workers:
            if worker.lost or worker.process.exitcode is not None:
                continue
            if worker.sender is None:  # not connected yet: it cannot be asked
                with contextlib.suppress(ProcessLookupError, ValueError):
                    worker.process.terminate()
                continue
            with contextlib.suppress(ChannelError, OSError, TimeoutError):
                async with asyncio.timeout(self.settings.cancel_grace):
                    await worker.sender.send(*control.encode(Cancel()))
        waiting = [w.exited for w in self._workers]
        if waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.cancel_grace):
                    await asyncio.gather(*(asyncio.shield(f) for f in waiting))
        for worker in self._workers:
            if worker.process.exitcode is None:
                log.warning("worker %d (pid %s) did not stop within %s s; killing it",
                            worker.index, worker.pid, self.settings.cancel_grace)
                with contextlib.suppress(ProcessLookupError, ValueError):
                    worker.process.kill()
        for worker in self._workers:
            await _reaped(worker)

    async def close(self) -> None:
        """Stop every worker (as ``cancel``) if not done yet, close the channels and
        remove the sockets. Nothing this pool started runs after it returns."""
        if self._closed:
            return
        try:
            if self._stopping is not None:
                await self._stopped()
            await self.cancel()
        finally:
            self._closed = True
            loop = asyncio.get_running_loop()
            for worker in self._workers:
                loop.remove_reader(worker.process.sentinel)
                if worker.process.exitcode is None:  # only if cancelled itself mid-way
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        worker.process.kill()
                    worker.process.join()
            tasks = [t for t in (self._accepting, *(w.reader for w in self._workers),
                                 *self._tasks) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for worker in self._workers:
                if worker.sender is not None:
                    await worker.sender.close()
                if worker.receiver is not None:
                    await worker.receiver.close()
                worker.exitcode = worker.process.exitcode
                worker.closed = True
                worker.process.close()
            if self._server is not None:
                await self._server.close()
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


async def _reaped(worker: _Worker) -> int:
    """The exit code of a worker that has exited or was killed, reaped in the
    loop's own thread and set on ``worker.exited``. (A ``join`` in another thread
    raced the pool's other waits for the same pid: one ``waitpid`` reaped the
    process, the other found no child, and until the first thread stored the
    exit code the process looked still running, so that ``Process.close()``
    refused.)"""
    # no event says "reaped": the sentinel turns readable as the process exits,
    # a moment before there is an exit code to collect
    while (code := worker.process.exitcode) is None:  # noqa: ASYNC110
        await asyncio.sleep(_REAP_POLL)
    if not worker.exited.done():
        worker.exited.set_result(code)
    return code


def _range(groups: range) -> tuple[int, int]:
    return groups.start, groups.stop
