"""Checkpointing: the settings, and the coordinator that drives checkpoints.

The coordinator starts checkpoint *n* every ``interval`` of processing time
(never two at once, and at least ``min_pause`` after the previous one
completed). Starting it means posting an action to each source task's
mailbox; between two batches the task records its reader's position,
acknowledges it and sends ``Barrier(n)`` down its chain and channels. Every
operator the barrier reaches snapshots its state, acknowledges it and
passes the barrier on (a task with several inputs first aligns them, see
``InputGate``). A task that has already ended acknowledges with its final
state. Once every source and operator has acknowledged, the snapshot is
written to storage in a worker thread, old checkpoints are pruned, and each
operator hears ``notify_checkpoint_complete(n)`` on its own task, between
batches: that is when a two-phase-commit sink commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from streamlet.errors import CheckpointError, StreamletConfigError
from streamlet.state.checkpoint_storage import CheckpointInfo
from streamlet.state.snapshots import KeyedRows, OperatorState, Snapshot, finished
from streamlet.time.clock import Clock, TimerHandle
from streamlet.time.durations import to_millis

log = logging.getLogger("streamlet.checkpoints")

_KEY_GROUP_CACHE = 2_000_000  # keys whose group is remembered between checkpoints


@dataclass(frozen=True)
class Checkpointing:
    """Exactly-once state: ``Pipeline(checkpointing=sl.Checkpointing(...))``.

    ``storage`` is ``"sqlite:///path.db"`` (the default is
    ``sqlite:///.streamlet/<job>.db``, relative to the working directory) or
    ``"file:///dir"``. The last ``retain`` checkpoints are kept. A checkpoint
    not complete after ``timeout`` is abandoned and the next one starts.
    ``allow_non_restored_state`` lets a job start from a checkpoint that has
    state for operators the job no longer has (that state is dropped).
    """

    interval: timedelta | int = timedelta(seconds=10)
    storage: str | None = None
    retain: int = 3
    timeout: timedelta | int = timedelta(minutes=10)
    min_pause: timedelta | int = 0
    allow_non_restored_state: bool = False
    interval_ms: int = field(init=False)
    timeout_ms: int = field(init=False)
    min_pause_ms: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_ms", to_millis(self.interval, "checkpoint interval"))
        object.__setattr__(self, "timeout_ms", to_millis(self.timeout, "checkpoint timeout"))
        object.__setattr__(self, "min_pause_ms",
                           to_millis(self.min_pause, "checkpoint min_pause"))
        if self.interval_ms < 1:
            raise StreamletConfigError("the checkpoint interval must be at least 1 ms")
        if self.timeout_ms < 1:
            raise StreamletConfigError("the checkpoint timeout must be at least 1 ms")
        if isinstance(self.retain, bool) or not isinstance(self.retain, int) or self.retain < 1:
            raise StreamletConfigError(
                f"Checkpointing(retain=...) must be a positive int, got {self.retain!r}")

    def storage_url(self, job: str) -> str:
        if self.storage is not None:
            return self.storage
        return f"sqlite:///{Path('.streamlet') / (job + '.db')}"


@dataclass(frozen=True)
class CheckpointStats:
    """One completed checkpoint, as ``JobResult.checkpoints`` reports it."""

    checkpoint_id: int
    kind: str
    started_at: int  # ms, the job's clock
    duration_ms: int  # from its start until durable in storage (the job's clock)
    size: int  # bytes of state


@dataclass
class Participant:
    """A task of the job, as the coordinator sees it."""

    names: list[str]  # the sources and operators in it that acknowledge
    start: Callable[[int], Awaitable[None]] | None  # a source task: emit barrier n
    post: Callable[[Callable[[], Awaitable[None]]], None]  # run an action on the task
    final_state: Callable[[int], dict[str, OperatorState | KeyedRows | None]]  # once ended
    notify: Callable[[int], Awaitable[None]]  # checkpoint n is complete
    done: bool = False


@dataclass
class _Pending:
    checkpoint_id: int
    kind: str
    started: int
    missing: set[str]
    states: dict[str, OperatorState | KeyedRows] = field(default_factory=dict)
    completed: asyncio.Future[int] | None = None


class CheckpointCoordinator:
    def __init__(self, job: str, config: Checkpointing, storage: Any, clock: Clock,
                 max_parallelism: int, first_id: int,
                 spawn: Callable[[Any, str], Any]) -> None:
        self.job = job
        self.config = config
        self.storage = storage
        self.clock = clock
        self.max_parallelism = max_parallelism
        self.next_id = first_id
        self.spawn = spawn
        self.participants: list[Participant] = []
        self.pending: _Pending | None = None
        self.completed: list[CheckpointStats] = []
        self._timer: TimerHandle | None = None
        self._timeout: TimerHandle | None = None
        self._last_completed_at: int | None = None
        self._stopped = False
        self._paused = False
        self._key_groups: dict[str, dict[Any, int]] = {}  # per operator: key -> key group

    # -- scheduling ----------------------------------------------------------------------

    def start(self) -> None:
        self._schedule(self.clock.now() + self.config.interval_ms)

    def stop(self) -> None:
        self._stopped = True
        for handle in (self._timer, self._timeout):
            if handle is not None:
                handle.cancel()
        self._timer = self._timeout = None

    def pause(self) -> None:
        """No more checkpoints on the timer (the job's final one is next)."""
        self._paused = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def settled(self) -> None:
        """Until no checkpoint is in progress (one that fails counts as settled)."""
        while (pending := self.pending) is not None and pending.completed is not None:
            with contextlib.suppress(CheckpointError):
                await asyncio.shield(pending.completed)

    async def savepoint(self) -> int:
        """Take a savepoint once the checkpoint in progress (if any) is done; its id."""
        while True:
            await self.settled()
            if self.pending is None:  # (a timed checkpoint may have started meanwhile)
                return await self.trigger("savepoint")

    def _schedule(self, when: int) -> None:
        if self._stopped or self._paused:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.pending is None and not self._stopped:
            self.trigger()

    # -- a checkpoint ------------------------------------------------------------------

    def trigger(self, kind: str = "checkpoint") -> asyncio.Future[int]:
        """Start the next checkpoint (or savepoint); the future gets its id once
        it is durable."""
        if self.pending is not None:
            raise CheckpointError(
                f"checkpoint {self.pending.checkpoint_id} of job {self.job!r} is still in "
                "progress; try again when it has completed")
        n = self.next_id
        self.next_id += 1
        names = {name for p in self.participants for name in p.names}
        pending = _Pending(n, kind, self.clock.now(), set(names))
        pending.completed = asyncio.get_running_loop().create_future()
        self.pending = pending
        self._timeout = self.clock.call_at(pending.started + self.config.timeout_ms,
                                           lambda: self._expire(n))
        for participant in self.participants:
            if participant.done:
                for name, state in participant.final_state(n).items():
                    self.acknowledge(n, name, state)
            elif participant.start is not None:
                start = participant.start
                participant.post(lambda start=start: start(n))  # type: ignore[misc]
        if not names:
            self._complete(pending)
        return pending.completed

    def acknowledge(self, checkpoint_id: int, name: str,
                    state: OperatorState | KeyedRows | None) -> None:
        pending = self.pending
        if pending is None or pending.checkpoint_id != checkpoint_id:
            return  # an abandoned checkpoint
        if name not in pending.missing:
            return  # acknowledged already (a task that ended acknowledges what it owes)
        if state is not None:
            pending.states[name] = state
        pending.missing.discard(name)
        if not pending.missing:
            self._complete(pending)

    def task_finished(self, participant: Participant) -> None:
        """A task has ended: it acknowledges what it still owes with its final state."""
        participant.done = True
        pending = self.pending
        if pending is None:
            return
        owed = [name for name in participant.names if name in pending.missing]
        if owed:
            states = participant.final_state(pending.checkpoint_id)
            for name in owed:
                self.acknowledge(pending.checkpoint_id, name, states.get(name))

    def _expire(self, checkpoint_id: int) -> None:
        pending = self.pending
        if pending is None or pending.checkpoint_id != checkpoint_id:
            return
        log.warning("checkpoint %d of job %r timed out after %d ms waiting for %s; abandoned",
                    checkpoint_id, self.job, self.config.timeout_ms, sorted(pending.missing))
        self.pending = None
        if pending.completed is not None and not pending.completed.done():
            pending.completed.set_exception(CheckpointError(
                f"checkpoint {checkpoint_id} timed out"))
            pending.completed.exception()  # retrieved: nobody may be waiting
        self._schedule(self.clock.now() + self.config.min_pause_ms)

    def _complete(self, pending: _Pending) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self.spawn(self._write(pending), f"checkpoint {pending.checkpoint_id}")

    def _cut(self, pending: _Pending) -> dict[str, tuple[OperatorState, int | None]]:
        """Each operator's state cut per key group, with the checkpoint its
        incremental part builds on (None: a whole copy). Off the event loop."""
        maxp = self.max_parallelism
        caches = self._key_groups
        if sum(map(len, caches.values())) > _KEY_GROUP_CACHE:
            caches.clear()
        return {name: (finished(state, maxp, caches.setdefault(name, {})),
                       state.base if isinstance(state, KeyedRows) else None)
                for name, state in pending.states.items()}

    def _snapshot(self, pending: _Pending) -> Snapshot:
        cut = self._cut(pending)
        return Snapshot(pending.checkpoint_id, self.job, pending.kind, pending.started,
                        self.max_parallelism, {name: state for name, (state, _) in cut.items()},
                        {name: base for name, (_, base) in cut.items() if base is not None})

    def _store(self, pending: _Pending) -> tuple[Snapshot, CheckpointInfo]:
        """In the writer thread: make the snapshot, write it, prune."""
        snapshot = self._snapshot(pending)
        info = self.storage.write(snapshot)
        self.storage.prune(self.job, self.config.retain)
        return snapshot, info

    async def _write(self, pending: _Pending) -> None:
        log.debug("writing checkpoint %d of job %r to %s", pending.checkpoint_id, self.job,
                  self.storage.url)
        try:
            snapshot, info = await asyncio.to_thread(self._store, pending)
        except Exception as exc:
            error = CheckpointError(
                f"checkpoint {pending.checkpoint_id} of job {self.job!r} could not be "
                f"written to {self.storage.url}: {exc}")
            if pending.completed is not None and not pending.completed.done():
                pending.completed.set_exception(error)
                pending.completed.exception()
            raise error from exc
        self.pending = None
        self.completed.append(CheckpointStats(snapshot.checkpoint_id, snapshot.kind,
                                              pending.started,
                                              self.clock.now() - pending.started, info.size))
        log.info("checkpoint %d of job %r complete (%d operators with state)",
                 snapshot.checkpoint_id, self.job, len(snapshot.operators))
        await self._notify_all(snapshot.checkpoint_id)
        if pending.completed is not None and not pending.completed.done():
            pending.completed.set_result(snapshot.checkpoint_id)
        now = self.clock.now()
        self._schedule(max(pending.started + self.config.interval_ms,
                           now + self.config.min_pause_ms))

    async def _notify_all(self, checkpoint_id: int) -> None:
        for participant in self.participants:
            if participant.done:
                await participant.notify(checkpoint_id)
            else:
                notify = participant.notify
                participant.post(lambda notify=notify: notify(checkpoint_id))  # type: ignore[misc]


Forward = Callable[[int, dict[str, tuple[OperatorState, int | None]]], Awaitable[None]]


class WorkerCheckpoints(CheckpointCoordinator):
    """A worker process's side of a parallel job's checkpoints.

    The job's coordinator triggers each checkpoint (with its id); this one
    starts it on the worker's sources and collects its tasks'
    acknowledgements as a job of one process does, then cuts the keyed state
    per key group here (so the workers share that work), forwards it, and
    waits: only when the coordinator has every worker's part durable does it
    confirm, and then the operators hear that the checkpoint is complete."""

    def __init__(self, job: str, config: Checkpointing, clock: Clock, max_parallelism: int,
                 spawn: Callable[[Any, str], Any], forward: Forward) -> None:
        super().__init__(job, config, None, clock, max_parallelism, 0, spawn)
        self._forward = forward

    def start(self) -> None:
        """Checkpoints start when the coordinator says, not on a timer here."""

    def trigger_by_coordinator(self, checkpoint_id: int) -> None:
        pending = self.pending
        if pending is not None:  # abandoned by the coordinator (it timed out)
            if self._timeout is not None:
                self._timeout.cancel()
                self._timeout = None
            self.pending = None
        self.next_id = checkpoint_id
        self.trigger()

    def _complete(self, pending: _Pending) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self.spawn(self._send(pending), f"checkpoint {pending.checkpoint_id}")

    async def _send(self, pending: _Pending) -> None:
        states = await asyncio.to_thread(self._cut, pending)
        await self._forward(pending.checkpoint_id, states)

    async def confirm(self, checkpoint_id: int) -> None:
        """The coordinator made checkpoint ``checkpoint_id`` durable."""
        pending = self.pending
        if pending is None or pending.checkpoint_id != checkpoint_id:
            return
        self.pending = None
        self.completed.append(CheckpointStats(checkpoint_id, pending.kind, pending.started,
                                              self.clock.now() - pending.started, 0))
        await self._notify_all(checkpoint_id)
