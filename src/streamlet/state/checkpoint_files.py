"""The two ways checkpoints lie on disk: rows of a SQLite file, or files in a directory.

Both store what ``checkpoint_storage`` defines: per checkpoint a manifest
(JSON, checksummed with the blobs) and the blobs as the bytes they are.
What differs is how a checkpoint is made whole and durable at once.

**A SQLite file** (the default). Table ``checkpoints``: a row per
checkpoint (job, id, kind, taken_at, manifest, checksum); table ``blobs``:
a row per blob (job, checkpoint id, operator, key group or -1 for the meta
part, data). One transaction per checkpoint, with the WAL journal and
``synchronous=FULL``: when ``write`` returns the commit is on disk, and a
crash before that leaves no trace of it.

**A directory**::

    <dir>/<job>/chk-000042/state.bin         every blob, end to end, in manifest order
    <dir>/<job>/chk-000042/_manifest.json    what the checkpoint is; written last

A checkpoint is complete exactly when its manifest exists, so the manifest
is written last and atomically: to a temp file, flushed, fsynced, renamed
into place, and the directory fsynced. ``state.bin`` is fsynced, and so is
the directory holding its name, before the manifest is written, so a
manifest never points at data that a crash could take back. A directory
without a manifest is a write that did not finish (or a manifest that was
deleted); ``latest()`` reports it and falls back. One data file rather than
one per operator or key group: every file costs an fsync, and the manifest
already says where each blob starts. Job names are %-encoded into directory
names (``/`` and a leading ``.`` included), so any job name is one
directory under ``<dir>``.

Either way, files are created owner-only (0600) and directories 0700,
because the blobs are pickles; and neither creates anything before the
first write, so reading a path where nothing is (``streamlet checkpoints
list`` with a typo) finds no checkpoints and leaves nothing behind.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from io import BufferedWriter
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

from streamlet.errors import CheckpointError

from .checkpoint_storage import (
    META_GROUP,
    CheckpointInfo,
    CheckpointStorage,
    DamagedCheckpoint,
    canonical,
    check_identity,
    describe,
    info_of,
    layout,
    log,
    parse_manifest,
    snapshot_of,
    verify_checksum,
)
from .snapshots import Snapshot


def fsync_directory(path: Path) -> None:
    """Make the names in a directory durable (a new file's, a rename's)."""
    if sys.platform == "win32":  # directories cannot be opened for fsync there
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- a SQLite file --------------------------------------------------------------------------------

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS checkpoints (
        job TEXT NOT NULL, id INTEGER NOT NULL, kind TEXT NOT NULL, taken_at INTEGER NOT NULL,
        manifest TEXT NOT NULL, checksum TEXT NOT NULL, PRIMARY KEY (job, id))""",
    # a rowid table, not WITHOUT ROWID: rows are large blobs, which SQLite
    # keeps in overflow pages best behind a small rowid B-tree
    """CREATE TABLE IF NOT EXISTS blobs (
        job TEXT NOT NULL, checkpoint_id INTEGER NOT NULL, operator TEXT NOT NULL,
        key_group INTEGER NOT NULL, data BLOB NOT NULL,
        UNIQUE (job, checkpoint_id, operator, key_group))""",
)


class SQLiteCheckpointStorage(CheckpointStorage):
    """Checkpoints as rows of one SQLite file (see the module's docstring).

    One connection, opened at first use and shared between threads under
    the storage's lock (``write`` comes from a worker thread).
    """

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url, path)
        self._conn: sqlite3.Connection | None = None

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            self._conn = _open_sqlite(self.path)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"{self.path} cannot be used as a checkpoint file: {exc}. "
                                  "Point the storage at a file streamlet made, or a new "
                                  "path") from None
        return self._conn

    def _write(self, snapshot: Snapshot, manifest: dict[str, Any], digest: str,
               blobs: builtins.list[tuple[str, int, bytes]]) -> str:
        conn = self._connect(create=True)
        assert conn is not None
        job, checkpoint_id = snapshot.job, snapshot.checkpoint_id
        with self._transaction(conn, f"write {describe(job, checkpoint_id)} to"):
            if conn.execute("SELECT 1 FROM checkpoints WHERE job = ? AND id = ?",
                            (job, checkpoint_id)).fetchone():
                raise CheckpointError(_exists(job, checkpoint_id, str(self.path)))
            # blobs without a row: damage, or nothing; a new write replaces them
            conn.execute("DELETE FROM blobs WHERE job = ? AND checkpoint_id = ?",
                         (job, checkpoint_id))
            self._insert_blobs(conn, job, checkpoint_id, blobs)
            self._insert_row(conn, snapshot, manifest, digest)
        return str(self.path)

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """One write transaction, rolled back when anything fails; SQLite's own
        errors become a ``CheckpointError`` saying what could not be done where."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot {what} {self.path}: {exc}") from exc

    def _insert_blobs(self, conn: sqlite3.Connection, job: str, checkpoint_id: int,
                      blobs: builtins.list[tuple[str, int, bytes]]) -> None:
        conn.executemany(
            "INSERT INTO blobs (job, checkpoint_id, operator, key_group, data) "
            "VALUES (?, ?, ?, ?, ?)",
            ((job, checkpoint_id, name, group, bytes(data)) for name, group, data in blobs))

    def _insert_row(self, conn: sqlite3.Connection, snapshot: Snapshot,
                    manifest: dict[str, Any], digest: str) -> None:
        conn.execute(
            "INSERT INTO checkpoints (job, id, kind, taken_at, manifest, checksum) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (snapshot.job, snapshot.checkpoint_id, snapshot.kind, snapshot.taken_at,
             canonical(manifest).decode("ascii"), digest))

    def _ids(self, job: str) -> builtins.list[int]:
        conn = self._connect(create=False)
        if conn is None:
            return []
        with _reading(self.path):
            rows = conn.execute(
                "SELECT id FROM checkpoints WHERE job = ? "
                "UNION SELECT DISTINCT checkpoint_id FROM blobs WHERE job = ?", (job, job))
            return [row[0] for row in rows]

    def _load(self, job: str, checkpoint_id: int) -> Snapshot | None:
        conn = self._connect(create=False)
        if conn is None:
            return None
        where = str(self.path)
        try:
            return self._load_from(conn, job, checkpoint_id)
        except sqlite3.DatabaseError as exc:
            raise DamagedCheckpoint(f"SQLite cannot read it: {exc}", where) from None

    def _load_from(self, conn: sqlite3.Connection, job: str,
                   checkpoint_id: int) -> Snapshot | None:
        where = str(self.path)
        key = (job, checkpoint_id)
        conn.execute("BEGIN")  # one read transaction: the row and its blobs as of one moment
        try:
            row = conn.execute("SELECT kind, taken_at, manifest, checksum FROM checkpoints "
                               "WHERE job = ? AND id = ?", key).fetchone()
            found = {(name, group): data for name, group, data in conn.execute(
                "SELECT operator, key_group, data FROM blobs "
                "WHERE job = ? AND checkpoint_id = ?", key)}
        finally:
            conn.execute("COMMIT")
        if row is None:
            if not found:
                return None
            raise DamagedCheckpoint(
                f"its {len(found)} blobs are in the file but its row in table 'checkpoints' "
                "is missing (deleted, or lost to damage)", where)
        kind, taken_at, text, digest = row
        manifest = parse_manifest(text, where)
        check_identity(manifest, job, checkpoint_id, where)
        if (kind, taken_at) != (manifest["kind"], manifest["taken_at"]):
            raise DamagedCheckpoint(
                f"its row says kind {kind!r} taken at {taken_at!r}, its manifest kind "
                f"{manifest['kind']!r} taken at {manifest['taken_at']!r}", where)
        expected = layout(manifest)
        for name, group, size in expected:
            data = found.get((name, group))
            if data is None:
                raise DamagedCheckpoint(f"the blob of {_blob(name, group)} is missing", where)
            if not isinstance(data, bytes):
                raise DamagedCheckpoint(f"the blob of {_blob(name, group)} is a "
                                        f"{type(data).__name__}, not bytes", where)
            if len(data) != size:
                raise DamagedCheckpoint(
                    f"the blob of {_blob(name, group)} is {len(data)} bytes, the manifest "
                    f"says {size}{': it was cut short' if len(data) < size else ''}", where)
        if len(found) != len(expected):
            extra = sorted(set(found) - {(name, group) for name, group, _ in expected})
            raise DamagedCheckpoint(
                f"the file has blobs the manifest does not list: "
                f"{', '.join(_blob(*pair) for pair in extra[:5])}", where)
        ordered = [(name, group, found[name, group]) for name, group, _ in expected]
        verify_checksum(manifest, digest, (data for _, _, data in ordered), where)
        return snapshot_of(manifest, ordered)

    def _list(self, job: str | None) -> builtins.list[CheckpointInfo]:
        conn = self._connect(create=False)
        if conn is None:
            return []
        query = "SELECT job, id, manifest FROM checkpoints"
        with _reading(self.path):
            rows = (conn.execute(query + " WHERE job = ?", (job,)) if job is not None
                    else conn.execute(query)).fetchall()
        out = []
        for row_job, checkpoint_id, text in rows:
            try:
                manifest = parse_manifest(text, str(self.path))
                check_identity(manifest, row_job, checkpoint_id, str(self.path))
            except DamagedCheckpoint as exc:
                log.warning("%s in %s is not listed: %s", describe(row_job, checkpoint_id),
                            self.path, exc.reason)
                continue
            out.append(info_of(manifest, str(self.path)))
        return out

    def _delete(self, job: str, checkpoint_id: int) -> bool:
        conn = self._connect(create=False)
        if conn is None:
            return False
        key = (job, checkpoint_id)
        with self._transaction(conn, f"delete {describe(job, checkpoint_id)} from"):
            rows = conn.execute("DELETE FROM checkpoints WHERE job = ? AND id = ?",
                                key).rowcount
            rows += conn.execute("DELETE FROM blobs WHERE job = ? AND checkpoint_id = ?",
                                 key).rowcount
        return rows > 0

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _blob(name: str, group: int) -> str:
    return f"operator {name!r} " + ("meta" if group == META_GROUP else f"key group {group}")


def _exists(job: str, checkpoint_id: int, location: str) -> str:
    return (f"{describe(job, checkpoint_id)} already exists at {location}; ids increase per "
            "job, so another job may be writing under the same name. Give each job its own "
            "name or storage, or delete the old checkpoint first")


class _reading:
    """Turn SQLite errors while finding checkpoints into a CheckpointError.

    Unlike one damaged checkpoint, a file SQLite cannot read at all is not
    something to fall back past: starting a job from nothing because its
    storage is broken would silently lose its state.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if isinstance(exc, sqlite3.Error):
            raise CheckpointError(f"cannot read the checkpoints in {self.path}: {exc}. "
                                  "The file is damaged or is not a checkpoint file") from exc


def _open_sqlite(path: Path) -> sqlite3.Connection:
    created = not path.exists()
    if created:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created owner-only before SQLite opens it, so the state is never
    # readable by others; SQLite gives the -wal and -shm files this mode too.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":  # Windows has no owner-only mode bits to set
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    if created:
        fsync_directory(path.parent)  # the file's name is durable before any checkpoint in it
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "checkpoints" not in tables:
            raise CheckpointError(
                f"{path} is a SQLite file with other tables ({', '.join(sorted(tables))}) "
                "and no checkpoints: it may be a state backend's file. Give checkpoints a "
                "file of their own")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise CheckpointError(f"{path}: SQLite refused the WAL journal (mode {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        conn.execute("PRAGMA busy_timeout=10000")  # another process may be writing
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


# --- a directory ----------------------------------------------------------------------------

MANIFEST: Final = "_manifest.json"
DATA: Final = "state.bin"
_CHECKPOINT_DIR: Final = re.compile(r"chk-(\d+)")
_TRASH_PREFIX: Final = ".deleting-"


def job_dirname(job: str) -> str:
    """A job's directory name: %-encoded, so no name can climb out of the storage."""
    name = quote(job, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def checkpoint_dirname(checkpoint_id: int) -> str:
    return f"chk-{checkpoint_id:06d}"


class DirectoryCheckpointStorage(CheckpointStorage):
    """Checkpoints as one directory each, under one directory per job."""

    def _dir(self, job: str, checkpoint_id: int) -> Path:
        return self.path / job_dirname(job) / checkpoint_dirname(checkpoint_id)

    def _write(self, snapshot: Snapshot, manifest: dict[str, Any], digest: str,
               blobs: builtins.list[tuple[str, int, bytes]]) -> str:
        target = self._dir(snapshot.job, snapshot.checkpoint_id)
        try:
            self._make_dirs(target.parent)
            if (target / MANIFEST).exists():
                raise CheckpointError(
                    f"{describe(snapshot.job, snapshot.checkpoint_id)} already exists at "
                    f"{target}; ids increase per job, so another job may be writing under "
                    "the same name. Give each job its own name or storage, or delete the "
                    "old checkpoint first")
            if target.exists():
                log.warning("replacing the unfinished %s left at %s",
                            describe(snapshot.job, snapshot.checkpoint_id), target)
                shutil.rmtree(target)
            target.mkdir(mode=0o700)
            fsync_directory(target.parent)
            with _create(target / DATA) as out:
                for _, _, data in blobs:
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            fsync_directory(target)  # state.bin's name is durable before the manifest exists
            self._write_manifest(target, {**manifest, "checksum": digest})
        except OSError as exc:
            raise CheckpointError(
                f"cannot write {describe(snapshot.job, snapshot.checkpoint_id)} to {target}: "
                f"{exc}") from exc
        return str(target)

    def _make_dirs(self, job_dir: Path) -> None:
        for directory in (self.path, job_dir):
            if not directory.is_dir():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                fsync_directory(directory.parent)

    def _write_manifest(self, target: Path, manifest: dict[str, Any]) -> None:
        """The step that makes the checkpoint exist: temp file, fsync, rename, fsync dir."""
        temp = target / (MANIFEST + ".tmp")
        with _create(temp) as out:
            out.write(canonical(manifest) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target / MANIFEST)
        fsync_directory(target)

    def _ids(self, job: str) -> builtins.list[int]:
        job_dir = self.path / job_dirname(job)
        return [int(match.group(1)) for entry in _subdirs(job_dir)
                if (match := _CHECKPOINT_DIR.fullmatch(entry.name))]

    def _load(self, job: str, checkpoint_id: int) -> Snapshot | None:
        target = self._dir(job, checkpoint_id)
        where = str(target)
        if not target.is_dir():
            return None
        try:
            text = (target / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise DamagedCheckpoint(
                f"it has no {MANIFEST}: its write did not finish, or the manifest was "
                "deleted", where) from None
        except OSError as exc:
            raise DamagedCheckpoint(f"its manifest cannot be read: {exc}", where) from None
        manifest = parse_manifest(text, where)
        recorded = manifest.pop("checksum", None)  # what it was computed over lacks it
        check_identity(manifest, job, checkpoint_id, where)
        try:
            data = (target / DATA).read_bytes()
        except FileNotFoundError:
            raise DamagedCheckpoint(f"its data file {DATA} is missing", where) from None
        except OSError as exc:
            raise DamagedCheckpoint(f"its data file {DATA} cannot be read: {exc}",
                                    where) from None
        if len(data) != manifest["size"]:
            raise DamagedCheckpoint(
                f"its data file {DATA} is {len(data)} bytes, the manifest says "
                f"{manifest['size']}{': it was cut short' if len(data) < manifest['size'] else ''}",
                where)
        view = memoryview(data)
        blobs: builtins.list[tuple[str, int, bytes]] = []
        offset = 0
        for name, group, size in layout(manifest):
            blobs.append((name, group, bytes(view[offset:offset + size])))
            offset += size
        verify_checksum(manifest, recorded, (view,), where)
        return snapshot_of(manifest, blobs)

    def _list(self, job: str | None) -> builtins.list[CheckpointInfo]:
        job_dirs = ([self.path / job_dirname(job)] if job is not None
                    else _subdirs(self.path))
        out = []
        for job_dir in job_dirs:
            for entry in _subdirs(job_dir):
                if not _CHECKPOINT_DIR.fullmatch(entry.name):
                    continue
                try:
                    text = (entry / MANIFEST).read_bytes()
                except FileNotFoundError:
                    continue  # unfinished: not a checkpoint (yet)
                except OSError as exc:
                    log.warning("%s is not listed: its manifest cannot be read: %s", entry, exc)
                    continue
                try:
                    manifest = parse_manifest(text, str(entry))
                except DamagedCheckpoint as exc:
                    log.warning("%s is not listed: %s", entry, exc.reason)
                    continue
                if job is not None and manifest["job"] != job:
                    continue  # a case-insensitive file system folds job names together
                out.append(info_of(manifest, str(entry)))
        return out

    def _delete(self, job: str, checkpoint_id: int) -> bool:
        target = self._dir(job, checkpoint_id)
        if not target.is_dir():
            return False
        # One rename takes the whole checkpoint out of view, so a crash part-way
        # through the removal cannot leave a manifest without its data.
        trash = target.parent / f"{_TRASH_PREFIX}{target.name}"
        try:
            if trash.exists():
                shutil.rmtree(trash)
            target.rename(trash)
            fsync_directory(target.parent)
            shutil.rmtree(trash)
        except OSError as exc:
            raise CheckpointError(f"cannot delete {describe(job, checkpoint_id)} at "
                                  f"{target}: {exc}") from exc
        return True


def _subdirs(path: Path) -> builtins.list[Path]:
    """The subdirectories of ``path``, none if it is missing."""
    try:
        return [entry for entry in path.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def _create(path: Path) -> Iterator[BufferedWriter]:
    """A new owner-only file (0600 from the moment it exists), for writing bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        yield out
