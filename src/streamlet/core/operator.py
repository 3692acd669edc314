"""The operator contract and the outputs that join operators together.

An operator receives whole batches and pushes whole batches; it never sees
one record per ``await``. Operators fused into one chain call each other
directly through :class:`Output`; the last operator of a chain pushes into a
channel instead. Watermarks, idleness and the end of input flow down the
same path as the data, so an operator that holds records back (an async call
in flight, a timer) emits them before it passes the watermark or end on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from streamlet.errors import StreamletConfigError, StreamletError, UserFunctionError
from streamlet.state.snapshots import KeyedRows, OperatorState
from streamlet.time.clock import Clock, TimerHandle

from .batch import Batch
from .graph import DEAD_LETTER
from .mailbox import Action, Mailbox

Acknowledge = Callable[[int, str, "OperatorState | KeyedRows | None"], None]


class Output:
    """Where an operator's batches and control elements go."""

    async def push(self, batch: Batch) -> None:
        raise NotImplementedError

    async def watermark(self, timestamp: int) -> None:
        raise NotImplementedError

    async def status(self, idle: bool) -> None:
        raise NotImplementedError

    async def end(self) -> None:
        raise NotImplementedError

    async def barrier(self, checkpoint_id: int) -> None:
        raise NotImplementedError


class Discard(Output):
    """The output of a sink, or of a side output nobody reads."""

    async def push(self, batch: Batch) -> None:
        return None

    async def watermark(self, timestamp: int) -> None:
        return None

    async def status(self, idle: bool) -> None:
        return None

    async def end(self) -> None:
        return None

    async def barrier(self, checkpoint_id: int) -> None:
        return None


class Chained(Output):
    """Function-to-function call into the next operator of the chain."""

    __slots__ = ("barrier", "end", "push", "status", "watermark")

    def __init__(self, operator: Operator) -> None:
        # bound once here, called per batch
        self.push = operator.process  # type: ignore[method-assign]
        self.watermark = operator.on_watermark  # type: ignore[method-assign]
        self.status = operator.on_status  # type: ignore[method-assign]
        self.end = operator.end_input  # type: ignore[method-assign]
        self.barrier = operator.on_barrier  # type: ignore[method-assign]


class Broadcast(Output):
    """Fan-out: the same (immutable) batch to several consumers."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs

    async def push(self, batch: Batch) -> None:
        for out in self.outputs:
            await out.push(batch)

    async def watermark(self, timestamp: int) -> None:
        for out in self.outputs:
            await out.watermark(timestamp)

    async def status(self, idle: bool) -> None:
        for out in self.outputs:
            await out.status(idle)

    async def end(self) -> None:
        for out in self.outputs:
            await out.end()

    async def barrier(self, checkpoint_id: int) -> None:
        for out in self.outputs:
            await out.barrier(checkpoint_id)


def fan_out(outputs: list[Output]) -> Output:
    if not outputs:
        return Discard()
    if len(outputs) == 1:
        return outputs[0]
    return Broadcast(outputs)


class DeadLetter:
    """A record a user function failed on, with the failure.

    Routed to the operator's ``"dead_letter"`` side output when the operator
    was given ``on_error="dead_letter"``.
    """

    __slots__ = ("error", "key", "operator", "source", "timestamp", "value")

    def __init__(self, operator: str, value: Any, error: BaseException, key: Any = None,
                 timestamp: int | None = None, source: tuple[Any, int] | None = None) -> None:
        self.operator = operator
        self.value = value
        self.error = error
        self.key = key
        self.timestamp = timestamp
        # (split, offset) the record was read from, when the source says and the
        # failing operator is one of the stateless ones right after it: for a
        # Kafka record, ((topic, partition), offset)
        self.source = source

    @property
    def error_message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"

    def __repr__(self) -> str:
        source = "" if self.source is None else f", source={self.source!r}"
        return (f"DeadLetter(operator={self.operator!r}, value={self.value!r}, "
                f"error={self.error_message!r}{source})")


def add_outputs(out: list[Any], result: Any) -> None:
    """What a window or join function returned, as outputs: ``None`` is none, a
    list or generator is several, anything else is one."""
    if result is None:
        return
    if isinstance(result, list) or inspect.isgenerator(result):
        out.extend(result)
    else:
        out.append(result)


def checking_first_call(owner: Any, attribute: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so that its first batch is checked for coroutines.

    A plain ``def`` or lambda that calls an async function returns a coroutine
    that nobody awaits, so the work silently never happens. The wrapper puts
    ``fn`` itself back on ``owner`` after the first call, so only the first
    batch pays for the check.
    """
    def first_calls(*args: Any) -> Any:
        setattr(owner, attribute, fn)
        result = fn(*args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise StreamletConfigError(
                f"operator {owner.name!r}: the function returned an awaitable, but it is "
                "a plain def (or a lambda), so nobody would await it. Declare it with "
                "'async def' so streamlet awaits it.")
        return result
    return first_calls


class OperatorContext:
    """What the runtime gives an operator when it opens: a way to start
    background tasks the job watches, the job's clock, the mailbox of the
    task the operator runs in, and which of the job's ``parallelism``
    parallel instances it is (``subtask``; one per worker process, so a sink
    that names files or Kafka transactions keeps them apart)."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, None], str], Any],
                 max_parallelism: int, clock: Clock, mailbox: Mailbox, *,
                 subtask: int = 0, parallelism: int = 1) -> None:
        self.spawn = spawn
        self.max_parallelism = max_parallelism
        self.clock = clock
        self.mailbox = mailbox
        self.subtask = subtask
        self.parallelism = parallelism

    def backend_name(self, operator: str) -> str:
        """Under what name ``operator`` asks its state backend for its state: each
        subtask of a parallel job has state (an SQLite file) of its own."""
        return operator if self.parallelism == 1 else f"{operator}@{self.subtask}"

    def call_at(self, when: int, action: Action) -> TimerHandle:
        """Run ``action`` on this operator's task once processing time reaches ``when``."""
        mailbox = self.mailbox
        mailbox.in_use = True
        return self.clock.call_at(when, lambda: mailbox.post(action))


class Operator:
    """A runtime operator. Subclasses override ``process`` and maybe the rest."""

    name: str = "operator"
    output: Output
    side_outputs: dict[str, Output]
    on_error: str = "fail"
    two_inputs = False  # a head that must know which input a batch came from (connect)
    # chained right after a source, gets an empty batch naming each split as the
    # source starts reading it, before its first record (watermarks per split)
    takes_split_announcements = False

    def wire(self, output: Output, side_outputs: dict[str, Output]) -> None:
        self.output = output
        self.side_outputs = side_outputs

    def open(self, ctx: OperatorContext) -> None:
        """Called once before the first batch."""

    def open_checkpoints(self, acknowledge: Acknowledge, max_parallelism: int) -> None:
        """Called once after ``open`` (and a restore), when checkpointing is on:
        ``acknowledge(checkpoint_id, name, state)`` hands a snapshot to the job."""
        self._acknowledge: Acknowledge | None = acknowledge
        self._max_parallelism = max_parallelism

    # -- checkpoints ------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int
                       ) -> OperatorState | KeyedRows | None:
        """This operator's state as of the barrier, or None when it keeps none.

        Called between batches, so the state is consistent; what it returns
        must not change afterwards (bytes, not live objects). Keyed state is
        returned as ``KeyedRows``, which the checkpoint's writer thread cuts
        per key group."""
        return None

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        """Take back what ``snapshot_state`` returned, before the first batch."""
        raise StreamletConfigError(
            f"operator {self.name!r} keeps no state, but the checkpoint has state for it")

    def rescale_meta(self, metas: list[bytes], subtask: int, parallelism: int) -> bytes:
        """The non-keyed part of this operator's state for ``subtask`` of
        ``parallelism``, from the parts of every subtask of a checkpoint taken
        with another number of workers (keyed state moves with its key groups
        by itself). The default keeps subtask 0's: right for what every
        subtask of a keyed operator holds alike (the watermark, which reaches
        them all)."""
        return metas[0] if metas else b""

    def restored(self, checkpoint_id: int, increments: int) -> None:
        """After ``restore_state``: the state is checkpoint ``checkpoint_id``'s, built
        from a whole copy and ``increments`` incremental checkpoints after it."""

    async def on_barrier(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id``: snapshot, acknowledge, pass the barrier on.

        An operator that holds records back (async calls in flight) emits them
        first, so that they are before the barrier downstream as well."""
        await self.prepare_snapshot(checkpoint_id)
        acknowledge = getattr(self, "_acknowledge", None)
        if acknowledge is not None:
            acknowledge(checkpoint_id, self.name,
                        self.snapshot_state(checkpoint_id, self._max_parallelism))
        await self.output.barrier(checkpoint_id)
        for side in self.side_outputs.values():
            await side.barrier(checkpoint_id)

    async def prepare_snapshot(self, checkpoint_id: int) -> None:
        """Before the snapshot: emit what is held back, pre-commit what is written."""

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable: commit what it covers."""

    def statistics(self) -> dict[str, int]:
        """Counters worth reporting when the job ends (none by default)."""
        return {}

    async def process(self, batch: Batch) -> None:
        raise NotImplementedError

    async def process_input(self, index: int, batch: Batch) -> None:
        """A batch from input ``index``, for operators with ``two_inputs``."""
        await self.process(batch)

    async def on_watermark(self, timestamp: int) -> None:
        """Event time has advanced to ``timestamp``: fire what is due, then pass it on."""
        await self.output.watermark(timestamp)
        for side in self.side_outputs.values():
            await side.watermark(timestamp)

    async def on_status(self, idle: bool) -> None:
        """The input went idle (or active again); downstream stops (or resumes)
        waiting for its watermarks."""
        await self.output.status(idle)
        for side in self.side_outputs.values():
            await side.status(idle)

    async def end_input(self) -> None:
        """The input has ended: flush anything held back, then pass the end on."""
        await self.end_outputs()

    async def end_outputs(self) -> None:
        """Tell every consumer, of the main output and of each side output, that
        nothing more is coming."""
        await self.output.end()
        for side in self.side_outputs.values():
            await side.end()

    async def close(self) -> None:
        """Called once when the job stops, normally or not; release resources."""

    # -- failures in user functions ------------------------------------------------

    def failed(self, batch: Batch, index: int, exc: BaseException,
               dead: list[DeadLetter] | None) -> None:
        """Record a failure on ``batch[index]``: raise, or keep it as a dead letter."""
        if isinstance(exc, StreamletConfigError):
            raise exc  # a mistake in the pipeline itself: no record can fix it
        value, key, ts = batch.record(index)
        source = batch.origin(index)
        if isinstance(exc, StreamletError):
            error: BaseException = exc  # already says where it happened
        else:
            error = UserFunctionError(self.name, value, exc, key, batch.keys is not None, source)
            error.__cause__ = exc
        if dead is None:
            raise error
        dead.append(DeadLetter(self.name, value, exc, key, ts, source))

    async def emit_dead_letters(self, dead: list[DeadLetter]) -> None:
        if dead:
            timestamps = None
            if dead[0].timestamp is not None:
                timestamps = [d.timestamp for d in dead]
            await self.side_outputs[DEAD_LETTER].push(Batch(list(dead), None, timestamps))  # type: ignore[arg-type]
