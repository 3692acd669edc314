"""Incremental checkpoints of the state tables of a keyed operator.

A backend that tracks which keys were written or deleted (the SQLite one:
state larger than memory, where copying all of it every checkpoint costs
most) lets a checkpoint hold only the entries changed since the operator's
last *completed* checkpoint, its base. Each such checkpoint names its base
(``Snapshot.bases``), storage keeps the bases of every retained checkpoint,
and a restore merges the chain from the last whole copy forward
(``snapshots.merge_chain``). Every ``FULL_EVERY`` increments, or when a
table was cleared, a whole copy starts a new chain, so chains stay short.

Changes are forgotten only when the checkpoint holding them completes: the
changes of a checkpoint that was abandoned are in the next one.
"""

from __future__ import annotations

from typing import Any

from streamlet.state.backend import KeyedStateBackend
from streamlet.state.snapshots import DELETED_ROW, TABLE_ROW

_GONE: Any = object()


class IncrementalTables:
    """Mixed into operators whose state tables live in a ``KeyedStateBackend``."""

    FULL_EVERY = 10  # increments before the next whole copy

    _base: int | None = None  # the last completed checkpoint holding this state
    _chain = 0  # increments since the whole copy _base builds on
    _whole = False  # the next checkpoint must be a whole copy
    _since_base: dict[str, set[Any]] | None = None
    _taken: dict[int, bool] | None = None  # checkpoints in flight -> whole copy?

    def table_rows(self, backend: KeyedStateBackend | None, checkpoint_id: int
                   ) -> tuple[list[tuple[Any, ...]], int | None]:
        """The rows of every state table for checkpoint ``checkpoint_id``, and the
        checkpoint they are changes since (None: a whole copy)."""
        if backend is None:
            return [], None
        if self._since_base is None:
            self._since_base = {}
            self._taken = {}
        assert self._taken is not None
        changes = backend.take_changes()
        if changes is None:
            self._whole = True
        else:
            for name, keys in changes.items():
                self._since_base.setdefault(name, set()).update(keys)
        tables = backend.tables()
        if (self._base is None or self._whole or self._chain >= self.FULL_EVERY
                or changes is None):
            self._taken[checkpoint_id] = True
            return [(key, TABLE_ROW, name, value) for name, table in tables.items()
                    for key, value in table.items()], None
        self._taken[checkpoint_id] = False
        rows: list[tuple[Any, ...]] = []
        for name, changed in self._since_base.items():
            table = tables.get(name)
            for key in changed:
                value = _GONE if table is None else table.get(key, _GONE)
                rows.append((key, DELETED_ROW, name, None) if value is _GONE
                            else (key, TABLE_ROW, name, value))
        return rows, self._base

    def tables_checkpointed(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: it is the new base."""
        taken = self._taken
        if not taken or checkpoint_id not in taken:
            return
        whole = taken[checkpoint_id]
        self._base = checkpoint_id
        self._chain = 0 if whole else self._chain + 1
        if whole:
            self._whole = False
        self._since_base = {}
        for n in [n for n in taken if n <= checkpoint_id]:
            del taken[n]

    def tables_restored(self, backend: KeyedStateBackend | None, checkpoint_id: int,
                        chain: int) -> None:
        """The tables now hold checkpoint ``checkpoint_id`` (``chain`` increments
        after its whole copy): the next checkpoint may build on it."""
        if backend is not None:
            backend.take_changes()  # the restore's own writes are in the checkpoint
        self._base = checkpoint_id
        self._chain = chain
        self._since_base = {}
        self._taken = {}
