"""Where keyed state lives while a job runs.

An operator asks its backend for one *table* per state name: a mapping from
the record's key to that key's state value. The in-memory backend hands out
plain dicts, so a state access on the hot path is one dict operation. The
SQLite backend hands out a write-back cache in front of a table in a file,
for state larger than memory. Checkpoints are a separate concern: they read
tables through ``items()`` and write them to checkpoint storage.

Values put into a table must be put again after being changed in place
(``table[key] = value``): a cache only knows a value is dirty when it is put.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

StateTable = MutableMapping[Any, Any]
"""The mapping a state handle reads and writes: a dict, or a cache in front of a file."""


class KeyedStateBackend:
    """Holds the keyed state of one operator."""

    def table(self, name: str) -> StateTable:
        raise NotImplementedError

    def tables(self) -> dict[str, StateTable]:
        raise NotImplementedError

    def flush(self) -> None:
        """Write anything cached to durable storage (a no-op in memory)."""

    def take_changes(self) -> dict[str, list[Any]] | None:
        """The keys of each table written or deleted since the last call, for
        incremental checkpoints; None when the backend does not track them (in
        memory, where a whole copy is cheap) or a table was cleared."""
        return None

    def close(self) -> None:
        """Release files and memory; called once when the job stops."""


class MemoryStateBackend(KeyedStateBackend):
    """State in plain dicts: the default, and the fastest."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[Any, Any]] = {}

    def table(self, name: str) -> dict[Any, Any]:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = {}
        return table

    def tables(self) -> dict[str, StateTable]:
        return {name: table for name, table in self._tables.items()}

    def close(self) -> None:
        self._tables.clear()


class StateBackendFactory(Protocol):
    """Builds one backend per keyed operator (``operator`` is its unique name)."""

    def __call__(self, job: str, operator: str) -> KeyedStateBackend: ...


def memory_backend(job: str, operator: str) -> KeyedStateBackend:
    return MemoryStateBackend()

