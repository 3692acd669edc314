"""Keyed state in a SQLite file, for state that does not fit in memory.

Each keyed operator gets one file and each state name one SQL table in it.
In front of every table sits a write-back LRU cache, because SQLite costs
microseconds per statement while the memory backend costs tens of
nanoseconds per access. A hot key is read and written in the cache only.
The file sees a batch of rows at a time, when the cache evicts or flushes,
and a single ``SELECT`` when a key is read that is not cached.

Why ``sqlite3`` and not ``sqlitedict``: sqlitedict has no cache, and sends
every read to a background thread through a queue and waits for the
answer. For the read-modify-write pattern of a keyed operator,
``benchmarks/state_backends.py`` measured it 4x slower than this module
when every access misses and 25x or more when keys are hot (see "State
backends" in docs/performance.md). Writing our own SQL also lets a row carry
its canonical key and key group, which a dict of pickles under ``str`` keys
has nowhere to put.

Rows are ``(k, kg, key, value)``:

* ``k`` is the canonical encoding of the key (``keys.encode_key``), the
  primary key, so ``1``, ``1.0`` and ``True`` are one row, as they are one
  dict key in the memory backend.
* ``kg`` is the key's key group, so a snapshot can be cut per key group
  without decoding keys.
* ``key`` and ``value`` are pickles (protocol 5) of the real key and value,
  so iteration gives back the key a function saw, not its encoding.

Because values are pickles, the file is created owner-only (0600): whoever
can write it can run code in the job, and whoever can read it can read the
state.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import sqlite3
import sys
import zlib
from collections import OrderedDict
from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Final

from streamlet.errors import StreamletConfigError

from .backend import KeyedStateBackend, StateTable
from .keys import DEFAULT_MAX_PARALLELISM, _fmix32, encode_key

DEFAULT_CACHE_SIZE: Final = 100_000
MAX_MAX_PARALLELISM: Final = 32_768
"""Flink's upper bound too: key groups are fixed once state exists, so it is
chosen once, large, and never changed."""

_FORMAT: Final = 1
_PAGE: Final = 1_000  # rows per SELECT when iterating a table
# Evicted rows are committed this many at a time, not per eviction: a commit
# writes every page it touched to the WAL, and random keys touch a page per
# row, so committing each eviction batch measured about 2x slower. Bounded so
# the WAL can still be checkpointed while a job runs without checkpoints.
_COMMIT_ROWS: Final = 50_000
# SQLite's own page cache, for the B-tree pages under our entry cache
# (SQLite's default is 2 MiB); measured up to 15% faster on misses.
_PAGE_CACHE_KIB: Final = 16_384
_TABLE_PREFIX: Final = "state_"
_PICKLE_PROTOCOL: Final = 5

_ABSENT: Any = object()  # cached: the file has no row for this key
_NOT_CACHED: Any = object()
_MISSING: Any = object()

_dumps = pickle.dumps
_loads = pickle.loads


@dataclass(frozen=True)
class CacheStatistics:
    """How a table's cache is doing; for sizing ``cache_size`` and for tests."""

    size: int
    """Entries cached now (present values and remembered absences)."""
    capacity: int
    """``cache_size``: the most entries the cache ever holds."""
    peak: int
    """The most entries it has held since the table was opened."""
    dirty: int
    """Entries changed since they were last written to the file."""
    misses: int
    """Reads that had to ``SELECT`` from the file."""
    evicted: int
    """Entries dropped to make room."""
    written: int
    """Rows written or deleted in the file."""


class _NanKey:
    """Stands in the cache for a key holding a NaN.

    The cache is keyed by the key itself, so a hit costs one dict lookup
    rather than an encoding. That agrees with the file's canonical ``k``
    for every key but NaN: NaN is not equal to itself, so two NaN keys are
    two dict keys, yet they encode to one row. Such keys are cached under
    this object, equal by encoding, and so always take the slow path.
    """

    __slots__ = ("k", "key")

    def __init__(self, k: bytes, key: Any) -> None:
        self.k = k
        self.key = key

    def __eq__(self, other: object) -> bool:
        return type(other) is _NanKey and other.k == self.k

    def __hash__(self) -> int:
        return hash(self.k)


def _has_nan(key: Any) -> bool:
    if type(key) is float:
        return math.isnan(key)
    if type(key) is tuple:
        return any(_has_nan(item) for item in key)
    return False


def _sql_table(name: str) -> str:
    # SQL identifiers are case-insensitive and state names are any str, so a
    # name is hex-encoded: injective, case-safe, and needs no quoting rules.
    return _TABLE_PREFIX + name.encode("utf-8", "surrogatepass").hex()


def _state_name(sql_table: str) -> str:
    return bytes.fromhex(sql_table[len(_TABLE_PREFIX):]).decode("utf-8", "surrogatepass")


class SQLiteStateTable(MutableMapping[Any, Any]):
    """One state's table: a write-back LRU cache in front of a SQL table.

    Reads and writes touch the cache; the file is written when dirty entries
    are evicted (a batch at a time) or flushed. A read that misses is one
    ``SELECT``; its result, absence included, is cached, so reading a key
    that was never written does not ask the file again, and memory stays
    within ``cache_size`` entries per table whatever is read.

    ``len()``, iteration and ``items()`` first write the dirty entries and
    then read the file, a page of rows at a time, so they are exact and
    never load the whole table or push it through the cache. They cost a
    scan of the file: they are for checkpoints and tests, not for the
    per-record path.

    Like a dict, an entry holds the very object that was put; a value changed
    in place must be put again, or the cache never learns it is dirty (see
    ``backend``).
    """

    def __init__(self, backend: SQLiteStateBackend, name: str, sql_table: str,
                 cache_size: int, max_parallelism: int) -> None:
        self.name = name
        self._backend = backend
        self._conn = backend._conn
        self._capacity = cache_size
        self._evict_batch = max(1, cache_size // 16)
        self._max_parallelism = max_parallelism
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        # The encoded key of every cached entry, kept so that a key is encoded
        # once when it enters the cache, not again each time it is written.
        self._codes: dict[Any, bytes] = {}
        self._dirty: set[Any] = set()
        # keys written or deleted since take_changes(), for incremental checkpoints;
        # None once the table was cleared (the next checkpoint must be whole)
        self._changed: set[Any] | None = set()
        self._peak = 0
        self._misses = 0
        self._evicted = 0
        self._written = 0
        table = f'"{sql_table}"'
        self._sql_select = f"SELECT value FROM {table} WHERE k = ?"
        self._sql_upsert = f"INSERT OR REPLACE INTO {table} (k, kg, key, value) VALUES (?,?,?,?)"
        self._sql_delete = f"DELETE FROM {table} WHERE k = ?"
        self._sql_count = f"SELECT COUNT(*) FROM {table}"
        self._sql_clear = f"DELETE FROM {table}"
        self._sql_page = f"SELECT k, key, value FROM {table} WHERE k > ? ORDER BY k LIMIT ?"

    # -- the per-record path ---------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            value = self._cache.get(key, _NOT_CACHED)
        except TypeError:  # unhashable: let the encoder name the bad key
            value = _NOT_CACHED
        if value is _NOT_CACHED:
            value = self._miss(key)[1]
        else:
            self._cache.move_to_end(key)
        return default if value is _ABSENT else value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __setitem__(self, key: Any, value: Any) -> None:
        cache = self._cache
        try:
            hit = key in cache
        except TypeError:
            hit = False
        if hit:
            cache[key] = value
            cache.move_to_end(key)
            self._dirty.add(key)
            if self._changed is not None:
                self._changed.add(key)
            return
        k = encode_key(key)  # validates the key now, not when it is written
        slot = self._slot(key, k)
        if slot is not key and slot in cache:
            cache[slot] = value
            cache.move_to_end(slot)
        else:
            self._admit(slot, k, value)
        self._dirty.add(slot)
        if self._changed is not None:
            self._changed.add(slot)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        cache = self._cache
        try:
            value = cache.get(key, _NOT_CACHED)
        except TypeError:
            value = _NOT_CACHED
        if value is _NOT_CACHED:
            slot, value = self._miss(key)
        else:
            slot = key
            cache.move_to_end(key)
        if value is _ABSENT:
            if default is _MISSING:
                raise KeyError(key)
            return default
        cache[slot] = _ABSENT  # a tombstone: the row is deleted when written
        self._dirty.add(slot)
        if self._changed is not None:
            self._changed.add(slot)
        return value

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def _slot(self, key: Any, k: bytes) -> Any:
        """What the cache is keyed by for ``key``: itself unless it holds a NaN."""
        if b"n" in k and _has_nan(key):  # the byte test is a cheap pre-filter
            return _NanKey(k, key)
        return key

    def _miss(self, key: Any) -> tuple[Any, Any]:
        k = encode_key(key)
        slot = self._slot(key, k)
        if slot is not key:
            value = self._cache.get(slot, _NOT_CACHED)
            if value is not _NOT_CACHED:
                self._cache.move_to_end(slot)
                return slot, value
        self._misses += 1
        row = self._conn.execute(self._sql_select, (k,)).fetchone()
        value = _ABSENT if row is None else _loads(row[0])
        self._admit(slot, k, value)
        return slot, value

    def _admit(self, slot: Any, k: bytes, value: Any) -> None:
        cache = self._cache
        if len(cache) >= self._capacity:
            self._evict()
        cache[slot] = value
        self._codes[slot] = k
        self._peak = max(self._peak, len(cache))

    def _evict(self) -> None:
        """Drop the least recently used entries, writing the dirty ones.

        A batch rather than one entry, so the file sees one ``executemany``
        per ``cache_size // 16`` new keys. The rows are built before anything
        is dropped: if a value cannot be pickled, the exception leaves the
        cache as it was.
        """
        cache = self._cache
        codes = self._codes
        dirty = self._dirty
        victims = list(islice(cache.items(), self._evict_batch))
        upserts: list[tuple[bytes, int, bytes, bytes]] = []
        deletes: list[tuple[bytes]] = []
        for slot, value in victims:
            if slot in dirty:
                self._row(slot, codes[slot], value, upserts, deletes)
        self._write(upserts, deletes)
        for slot, _ in victims:
            del cache[slot]
            del codes[slot]
            dirty.discard(slot)
        self._evicted += len(victims)
        self._backend._commit_if_large()

    # -- writing to the file ----------------------------------------------------------

    def _row(self, slot: Any, k: bytes, value: Any,
             upserts: list[tuple[bytes, int, bytes, bytes]], deletes: list[tuple[bytes]]) -> None:
        if value is _ABSENT:
            deletes.append((k,))
            return
        key = slot.key if type(slot) is _NanKey else slot
        try:
            upserts.append((k, _fmix32(zlib.crc32(k)) % self._max_parallelism,
                            _dumps(key, _PICKLE_PROTOCOL), _dumps(value, _PICKLE_PROTOCOL)))
        except Exception as exc:
            exc.add_note(f"state {self.name!r}, key {key!r}: the SQLite state backend "
                         "pickles keys and values, so they must be picklable")
            raise

    def _write(self, upserts: list[tuple[bytes, int, bytes, bytes]],
               deletes: list[tuple[bytes]]) -> None:
        if not (upserts or deletes):
            return
        self._backend._begin()
        if upserts:
            upserts.sort()  # in key order: each B-tree page is then visited once
            self._conn.executemany(self._sql_upsert, upserts)
        if deletes:
            self._conn.executemany(self._sql_delete, deletes)
        count = len(upserts) + len(deletes)
        self._written += count
        self._backend._uncommitted += count

    def _write_dirty(self) -> None:
        """Bring the file up to date with the cache (in the open transaction)."""
        dirty = self._dirty
        if not dirty:
            return
        cache = self._cache
        codes = self._codes
        upserts: list[tuple[bytes, int, bytes, bytes]] = []
        deletes: list[tuple[bytes]] = []
        for slot in dirty:
            self._row(slot, codes[slot], cache[slot], upserts, deletes)
        self._write(upserts, deletes)
        dirty.clear()

    # -- whole-table operations --------------------------------------------------------

    def _rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        # Pages by primary key instead of one long cursor, so a caller may
        # change the table while iterating, and each page sees those changes.
        after = b""  # sorts before every encoded key
        while True:
            self._write_dirty()
            rows: list[tuple[bytes, bytes, bytes]] = self._conn.execute(
                self._sql_page, (after, _PAGE)).fetchall()
            yield from rows
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def __iter__(self) -> Iterator[Any]:
        for _, key, _ in self._rows():
            yield _loads(key)

    def items(self) -> ItemsView[Any, Any]:
        return _Items(self)

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def __len__(self) -> int:
        self._write_dirty()
        count: int = self._conn.execute(self._sql_count).fetchone()[0]
        return count

    def clear(self) -> None:
        self._backend._begin()
        self._conn.execute(self._sql_clear)
        self._drop_cache()
        self._changed = None

    def take_changes(self) -> list[Any] | None:
        """The keys written or deleted since the last call, and forget them;
        None when the table was cleared since (only a whole copy will do)."""
        changed = self._changed
        self._changed = set()
        if changed is None:
            return None
        return [slot.key if type(slot) is _NanKey else slot for slot in changed]

    # -- introspection -----------------------------------------------------------------

    def cache_len(self) -> int:
        return len(self._cache)

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(size=len(self._cache), capacity=self._capacity,
                               peak=self._peak, dirty=len(self._dirty), misses=self._misses,
                               evicted=self._evicted, written=self._written)

    def _drop_cache(self) -> None:
        self._cache.clear()
        self._codes.clear()
        self._dirty.clear()

    def __repr__(self) -> str:
        return f"<SQLiteStateTable {self.name!r} of {self._backend.path}>"


class _Items(ItemsView[Any, Any]):
    # Reads key and value from the same row: the default view would look each
    # key up again, one SELECT per row, and push the whole table through the cache.
    _mapping: SQLiteStateTable

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for _, key, value in self._mapping._rows():
            yield _loads(key), _loads(value)


class _Values(ValuesView[Any]):
    _mapping: SQLiteStateTable

    def __iter__(self) -> Iterator[Any]:
        for _, _, value in self._mapping._rows():
            yield _loads(value)


class SQLiteStateBackend(KeyedStateBackend):
    """The keyed state of one operator, in one SQLite file.

    The file runs in WAL mode with ``synchronous=NORMAL``, and evicted rows
    are committed in batches of tens of thousands, and at every ``flush()``:
    a commit does not wait for the disk, and a crash can lose what came
    after the last commit but never corrupts the file. That is the right
    trade for a live backend, because this file is not what recovery
    trusts: checkpoints copy state to their own storage with their own
    durability, and a job restarts from its last checkpoint, not from
    whatever this file held when it died. Paying an fsync per eviction here
    would buy nothing. Another connection to the file sees the state as of
    the last ``flush()``.

    ``cache_size`` bounds the entries cached *per state name*, so memory is
    about ``cache_size`` times the number of states, times an entry's size.
    ``max_parallelism`` fixes the key group stored with each row; it is
    recorded in the file, and reopening with another value is refused,
    because the stored key groups would be wrong.

    Not thread-safe, like the rest of a job: one event loop thread uses it.
    """

    def __init__(self, path: str | os.PathLike[str], *, cache_size: int = DEFAULT_CACHE_SIZE,
                 max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> None:
        _check_cache_size(cache_size)
        _check_max_parallelism(max_parallelism)
        self.path = Path(path)
        self.cache_size = cache_size
        self.max_parallelism = max_parallelism
        # Created owner-only before SQLite opens it, so there is no moment when
        # it is readable by others; fchmod covers a file left by an older run.
        # SQLite gives the -wal and -shm files the database file's mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform != "win32":  # Windows has no owner-only mode bits to set
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._tables: dict[str, SQLiteStateTable] = {}
        self._closed = False
        self._uncommitted = 0
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
            self._check_meta()
        except BaseException:
            self._conn.close()
            raise

    def _check_meta(self) -> None:
        self._begin()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS streamlet_meta (name TEXT PRIMARY KEY, value)")
        self._conn.execute(
            "INSERT OR IGNORE INTO streamlet_meta VALUES ('format', ?), ('max_parallelism', ?)",
            (_FORMAT, self.max_parallelism))
        meta = dict(self._conn.execute("SELECT name, value FROM streamlet_meta"))
        self._commit()
        if meta["format"] != _FORMAT:
            raise StreamletConfigError(
                f"{self.path} holds state in format {meta['format']!r}; this version of "
                f"streamlet reads format {_FORMAT}")
        if meta["max_parallelism"] != self.max_parallelism:
            raise StreamletConfigError(
                f"{self.path} holds state written with max_parallelism="
                f"{meta['max_parallelism']}, not {self.max_parallelism}: key groups are fixed "
                "once state exists, so use the same max_parallelism or a new directory")

    def _begin(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")

    def _commit(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._uncommitted = 0

    def _commit_if_large(self) -> None:
        if self._uncommitted >= _COMMIT_ROWS:
            self._commit()

    def table(self, name: str) -> SQLiteStateTable:
        table = self._tables.get(name)
        if table is None:
            if not isinstance(name, str):
                raise StreamletConfigError(f"a state name is a str, not {name!r}")
            if self._closed:
                raise StreamletConfigError(f"{self.path}: the state backend is closed")
            sql_table = _sql_table(name)
            self._begin()
            self._conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{sql_table}" (k BLOB PRIMARY KEY, '
                "kg INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
            self._commit()
            table = SQLiteStateTable(self, name, sql_table, self.cache_size,
                                     self.max_parallelism)
            self._tables[name] = table
        return table

    def take_changes(self) -> dict[str, list[Any]] | None:
        tables = self._tables
        changes: dict[str, list[Any]] = {}
        whole = False
        for name, table in tables.items():
            changed = table.take_changes()
            if changed is None:
                whole = True
            else:
                changes[name] = changed
        return None if whole else changes

    def tables(self) -> dict[str, StateTable]:
        """Every state in the file, including those an earlier run wrote."""
        stored = [row[0] for row in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'state\\_%' "
            "ESCAPE '\\'")]
        names = {_state_name(sql_table) for sql_table in stored} | set(self._tables)
        return {name: self.table(name) for name in sorted(names)}

    def flush(self) -> None:
        """Write every table's dirty entries and deletions in one transaction."""
        if self._closed:
            return
        for table in self._tables.values():
            table._write_dirty()
        self._commit()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            for table in self._tables.values():
                table._drop_cache()
            self._conn.close()

    def statistics(self) -> dict[str, CacheStatistics]:
        """Each open table's cache statistics, by state name."""
        return {name: table.statistics() for name, table in self._tables.items()}

    def __repr__(self) -> str:
        return f"<SQLiteStateBackend {self.path}>"


# -- the user-facing configuration ---------------------------------------------------


def _check_cache_size(cache_size: object) -> None:
    if type(cache_size) is not int or cache_size < 1:
        raise StreamletConfigError(
            f"cache_size is the number of entries cached per state, a positive int, "
            f"not {cache_size!r}")


def _check_max_parallelism(max_parallelism: object) -> None:
    if type(max_parallelism) is not int or not 1 <= max_parallelism <= MAX_MAX_PARALLELISM:
        raise StreamletConfigError(
            f"max_parallelism is the number of key groups, an int from 1 to "
            f"{MAX_MAX_PARALLELISM}, not {max_parallelism!r}")


_UNSAFE = re.compile(r"[^a-z0-9_.-]")
_MAX_NAME = 80


def _file_name(name: str) -> str:
    """A file name for a job or operator name, distinct for distinct names.

    Only lower-case ASCII letters, digits and ``_.-`` are kept, so the name is
    safe on every file system, case-insensitive ones included; when anything
    had to change, a hash of the original is appended so that two names
    that sanitize alike still get two files.
    """
    safe = _UNSAFE.sub("_", name.lower())[:_MAX_NAME]
    if safe.startswith("."):  # no hidden files, and never "." or ".."
        safe = "_" + safe[1:]
    if safe != name or not safe:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe}-{digest}"
    return safe


@dataclass(frozen=True)
class SQLiteState:
    """Keep keyed state in SQLite files under ``directory``, for state larger
    than memory: ``Pipeline(state_backend=SQLiteState("/var/lib/myjob"))``.

    Each keyed operator gets ``directory/<job>/<operator>.sqlite``, opened
    when the job starts. ``cache_size`` is how many entries of each state
    stay in memory; a larger cache means fewer reads from the file.
    ``max_parallelism`` is the number of key groups: the same as the
    pipeline's, and the same for as long as the files are kept, since every
    row records its key group.
    """

    directory: str | Path
    cache_size: int = DEFAULT_CACHE_SIZE
    max_parallelism: int = DEFAULT_MAX_PARALLELISM

    def __post_init__(self) -> None:
        if not isinstance(self.directory, str | os.PathLike) or not str(self.directory):
            raise StreamletConfigError(
                f"SQLiteState needs a directory (a str or Path), not {self.directory!r}")
        _check_cache_size(self.cache_size)
        _check_max_parallelism(self.max_parallelism)

    def path(self, job: str, operator: str) -> Path:
        """The file that holds ``operator``'s state in ``job``."""
        return Path(self.directory) / _file_name(job) / f"{_file_name(operator)}.sqlite"

    def __call__(self, job: str, operator: str) -> SQLiteStateBackend:
        path = self.path(job, operator)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A run starts from empty state: the file is the live working store, not
        # a checkpoint, and state left by an earlier run (whose timers and
        # sources are gone) would mix with this one's.
        for leftover in (path, path.with_name(path.name + "-wal"),
                         path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        return SQLiteStateBackend(path, cache_size=self.cache_size,
                                  max_parallelism=self.max_parallelism)
