"""Two-phase-commit sinks: output exactly once, tied to checkpoints.

Flink's ``TwoPhaseCommitSinkFunction``: records are written into the current
*transaction*; at a checkpoint barrier the transaction is pre-committed (its
data made durable but not visible) and a new one begins; when the checkpoint
is complete the pre-committed transactions it covers are committed (made
visible). The pre-committed transactions are part of the checkpoint, so a job
restored from it commits them (commit must therefore be idempotent), and
whatever a crashed attempt left that the checkpoint does not know of is
cleaned up. Output after the last complete checkpoint is never visible twice:
the restored job writes it again into new transactions.

When the input ends the open transaction is pre-committed, and it commits
with the job's final checkpoint. Without checkpointing, it commits there
and then, so output becomes visible when the job ends.

With ``workers=N`` each worker runs its own instance of the sink
(``open_subtask`` tells it which), with transactions of its own. A restore
with another number of workers hands the pre-committed transactions of old
subtask ``i`` to new subtask ``i % N``, which commits them; each new subtask
also learns the others' (so that its clean-up leaves them alone) and gets
``merge_states`` of every old subtask's sink state.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from streamlet.state.snapshots import OperatorState, dumps, loads

from .batch import Batch
from .operator import Acknowledge, Operator, OperatorContext

T = TypeVar("T")


class TwoPhaseCommitSink(Generic[T]):
    """Subclass and pass to ``stream.sink(...)``. Transactions must pickle: the
    pre-committed ones are kept in the checkpoint."""

    def begin_transaction(self) -> T:
        raise NotImplementedError

    def write(self, transaction: T, values: list[Any]) -> None:
        """Add a batch of records to the transaction (not yet visible)."""
        raise NotImplementedError

    def pre_commit(self, transaction: T) -> None:
        """Make the transaction durable, still invisible; nothing more is written to it."""

    def commit(self, transaction: T) -> None:
        """Make a pre-committed transaction visible. May be called again for one
        already committed (after a crash), and must then do nothing."""
        raise NotImplementedError

    def abort(self, transaction: T) -> None:
        """Drop a transaction that will never be committed."""

    def clean_up(self, known: list[T]) -> None:
        """On start, after a restore: remove what earlier attempts left behind
        that is not one of ``known`` (the transactions the checkpoint holds)."""

    def open_subtask(self, subtask: int, parallelism: int) -> None:
        """Called once before ``open``: this is subtask ``subtask`` of
        ``parallelism`` (one per worker process) writing the same output, so
        it names what it writes apart from the others'."""

    def open(self) -> None:
        """Called once before the first record."""

    def close(self) -> None:
        """Called once when the job stops."""

    def state(self) -> Any:
        """Extra state of the sink kept in checkpoints (a counter for file names)."""
        return None

    def restore(self, state: Any) -> None:
        """Take back what ``state()`` returned."""

    def merge_states(self, states: list[Any]) -> Any:
        """The state to ``restore`` from the ``state()`` of every subtask of a
        checkpoint taken with another number of workers. The default keeps
        subtask 0's."""
        return states[0] if states else None


class TwoPhaseCommitOperator(Operator):
    def __init__(self, name: str, sink: TwoPhaseCommitSink[Any]) -> None:
        self.name = name
        self.sink = sink
        self.transaction: Any = None
        self.pending: list[tuple[int, Any]] = []  # (checkpoint id, transaction)
        self.checkpointing = False
        self.last_barrier = 0
        self._started = False
        self._others: list[Any] = []  # other subtasks' restored transactions: not ours to clean

    def open(self, ctx: OperatorContext) -> None:
        self.sink.open_subtask(ctx.subtask, ctx.parallelism)
        self.sink.open()

    def open_checkpoints(self, acknowledge: Acknowledge, max_parallelism: int) -> None:
        super().open_checkpoints(acknowledge, max_parallelism)
        self.checkpointing = True

    def _start(self) -> None:
        """Before the first transaction: clean up what the checkpoint does not know."""
        self._started = True
        self.sink.clean_up([t for _, t in self.pending] + self._others)

    async def process(self, batch: Batch) -> None:
        if self.transaction is None:
            if not self._started:
                self._start()
            self.transaction = self.sink.begin_transaction()
        self.sink.write(self.transaction, batch.values)

    def _pre_commit(self, checkpoint_id: int) -> None:
        if self.transaction is not None:
            self.sink.pre_commit(self.transaction)
            self.pending.append((checkpoint_id, self.transaction))
            self.transaction = None

    async def prepare_snapshot(self, checkpoint_id: int) -> None:
        self.last_barrier = checkpoint_id
        self._pre_commit(checkpoint_id)

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> OperatorState:
        return OperatorState(dumps((self.pending, self.sink.state())), {})

    def rescale_meta(self, metas: list[bytes], subtask: int, parallelism: int) -> bytes:
        """Old subtask ``i``'s pre-committed transactions go to ``i % parallelism``,
        so each commits once; the others' are listed too, to be left alone."""
        mine: list[tuple[int, Any]] = []
        others: list[Any] = []
        states: list[Any] = []
        for i, meta in enumerate(metas):
            if not meta:
                continue
            pending, sink_state = loads(meta)[:2]
            states.append(sink_state)
            if i % parallelism == subtask:
                mine.extend(pending)
            else:
                others.extend(t for _, t in pending)
        return dumps((mine, self.sink.merge_states(states), others))

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        restored = loads(state.meta)
        pending, sink_state = restored[:2]
        self._others = list(restored[2]) if len(restored) > 2 else []
        self.sink.restore(sink_state)
        for _, transaction in pending:  # the checkpoint is complete: they all commit
            self.sink.commit(transaction)
        self._start()

    def restored(self, checkpoint_id: int, increments: int) -> None:
        self.last_barrier = checkpoint_id

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        keep: list[tuple[int, Any]] = []
        for covered, transaction in self.pending:
            if covered <= checkpoint_id:
                self.sink.commit(transaction)
            else:
                keep.append((covered, transaction))
        self.pending = keep

    async def end_input(self) -> None:
        if not self._started:
            self._start()
        if self.checkpointing:
            # commits with the first checkpoint whose barrier did not reach this
            # sink (an earlier one does not hold these records): the final one
            self._pre_commit(self.last_barrier + 1)
        else:
            self._pre_commit(0)
            await self.notify_checkpoint_complete(0)
        await self.end_outputs()

    async def close(self) -> None:
        try:
            if self.transaction is not None:
                self.sink.abort(self.transaction)
                self.transaction = None
        finally:
            self.sink.close()
