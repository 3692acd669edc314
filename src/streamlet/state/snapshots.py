"""What a checkpoint holds, and the helpers operators use to cut their state.

An operator's part of a snapshot is opaque bytes: a non-keyed part (a
source's position, an operator's watermark) and its keyed state cut per key
group, so that a snapshot taken with one number of workers restores onto
another (each worker takes the groups it owns). Operators pickle their own
state: pickles are read only from checkpoint storage, which is as trusted as
the code (owner-only files, see ``checkpoint_storage``).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .keys import key_group


@dataclass(frozen=True)
class OperatorState:
    """One operator's part of a snapshot: opaque bytes the operator made."""

    meta: bytes  # the non-keyed part (a source's position, a watermark); b"" if none
    key_groups: dict[int, bytes]  # key group -> that group's keyed state


@dataclass(frozen=True)
class Snapshot:
    """A whole checkpoint or savepoint of one job."""

    checkpoint_id: int  # increasing per job
    job: str  # the pipeline's name
    kind: str  # "checkpoint" or "savepoint"
    taken_at: int  # ms since the epoch, from the job's clock
    max_parallelism: int
    operators: dict[str, OperatorState]  # by operator name
    # operator name -> the checkpoint whose state this operator's part changes: its
    # part holds only what changed since then (an incremental checkpoint)
    bases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyedRows:
    """An operator's state as taken at a barrier, not yet cut per key group.

    At the barrier the operator only lists its rows (each starting with a key)
    and pickles them, which freezes them in one C call; computing each key's
    group (a stable hash per key) and pickling per group happen later, in the
    thread that writes the checkpoint (``finish``), off the event loop.
    """

    meta: bytes
    rows: bytes  # a pickled list of rows
    base: int | None = None  # the rows are changes since this checkpoint

    def finish(self, max_parallelism: int, group_of: dict[Any, int] | None = None
               ) -> OperatorState:
        return OperatorState(self.meta,
                             by_key_group(loads(self.rows), max_parallelism, group_of))


def keyed_rows(meta: Any, rows: list[tuple[Any, ...]], base: int | None = None) -> KeyedRows:
    return KeyedRows(dumps(meta), dumps(rows), base)


TABLE_ROW = "state"  # (key, TABLE_ROW, table name, value): a key's entry in a state table
DELETED_ROW = "deleted"  # (key, DELETED_ROW, table name, None): gone since the base


def merge_chain(chain: list[OperatorState], max_parallelism: int) -> OperatorState:
    """One operator's full state from a full snapshot and the incremental ones
    after it, oldest first: table entries accumulate key by key (a deleted
    row removes one); every other row, and the meta part, are the newest's."""
    entries: dict[tuple[str, Any], tuple[Any, ...]] = {}
    for state in chain:
        for row in rows_of(state):
            kind = row[1]
            if kind == TABLE_ROW:
                entries[(row[2], row[0])] = row
            elif kind == DELETED_ROW:
                entries.pop((row[2], row[0]), None)
    newest = chain[-1]
    rows = [row for row in rows_of(newest) if row[1] not in (TABLE_ROW, DELETED_ROW)]
    rows.extend(entries.values())
    return OperatorState(newest.meta, by_key_group(rows, max_parallelism))


def finished(state: OperatorState | KeyedRows, max_parallelism: int,
             group_of: dict[Any, int] | None = None) -> OperatorState:
    return state.finish(max_parallelism, group_of) if isinstance(state, KeyedRows) else state


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


def loads(data: bytes) -> Any:
    return pickle.loads(data)  # checkpoint storage is as trusted as the code


def by_key_group(rows: Iterable[tuple[Any, ...]], max_parallelism: int,
                 group_of: dict[Any, int] | None = None) -> dict[int, bytes]:
    """Rows whose first item is a key, pickled per key group (in their order).

    ``group_of`` caches key groups; pass the same dict for each checkpoint of
    an operator, whose keys mostly stay, to hash each key once."""
    groups: dict[int, list[tuple[Any, ...]]] = {}
    if group_of is None:
        group_of = {}  # keys repeat across rows (a key's windows, timers)
    for row in rows:
        key = row[0]
        group = group_of.get(key)
        if group is None:
            group = group_of[key] = key_group(key, max_parallelism)
        found = groups.get(group)
        if found is None:
            groups[group] = [row]
        else:
            found.append(row)
    return {group: dumps(found) for group, found in groups.items()}


def rows_of(state: OperatorState) -> list[Any]:
    """Every row of every key group, groups in order, each group's rows in order."""
    rows: list[Any] = []
    for group in sorted(state.key_groups):
        rows.extend(loads(state.key_groups[group]))
    return rows


# -- snapshots of parallel jobs ---------------------------------------------------------
#
# A job of N worker processes keeps one entry per operator, as a job of one
# does: its keyed state from every worker (each owned its own key groups) and
# subtask 0's non-keyed part. The non-keyed parts of subtasks 1..N-1 are
# entries of their own, ``name@i``, and ``@parallelism`` says N. So a
# snapshot of one process is a snapshot of a parallel job with N = 1, and
# either restores onto any number of workers.

PARALLELISM = "@parallelism"


def parallelism_of(snapshot: Snapshot) -> int:
    entry = snapshot.operators.get(PARALLELISM)
    return 1 if entry is None else int(loads(entry.meta))


def main_operators(snapshot: Snapshot) -> list[str]:
    """The operators' names, without the entries of other subtasks."""
    return [name for name in snapshot.operators if "@" not in name]


def subtask_metas(snapshot: Snapshot, name: str) -> list[bytes]:
    """The non-keyed part of ``name`` of each subtask, in subtask order (b"" for
    a subtask that had none)."""
    operators = snapshot.operators
    first = operators.get(name)
    metas = [b"" if first is None else first.meta]
    for i in range(1, parallelism_of(snapshot)):
        entry = operators.get(f"{name}@{i}")
        metas.append(b"" if entry is None else entry.meta)
    return metas


def merge_subtasks(parts: list[dict[str, OperatorState]]) -> dict[str, OperatorState]:
    """One snapshot's operators from each subtask's (in subtask order)."""
    merged: dict[str, OperatorState] = {}
    names = sorted({name for part in parts for name in part})
    for name in names:
        groups: dict[int, bytes] = {}
        for part in parts:
            state = part.get(name)
            if state is not None:
                groups.update(state.key_groups)
        first = parts[0].get(name)
        merged[name] = OperatorState(b"" if first is None else first.meta, groups)
        for i, part in enumerate(parts[1:], 1):
            state = part.get(name)
            if state is not None and state.meta:
                merged[f"{name}@{i}"] = OperatorState(state.meta, {})
    if len(parts) > 1:
        merged[PARALLELISM] = OperatorState(dumps(len(parts)), {})
    return merged
