"""Where checkpoints are kept: a SQLite file or a directory, durable and checked.

A checkpoint is a ``Snapshot``: per operator, opaque bytes that the operator
made (``OperatorState``), its keyed part cut into key groups so that a
snapshot taken with 4 workers restores onto 2 or 8. This module does not
look inside those bytes. It stores them next to a *manifest*, a small JSON
document saying what the checkpoint is (job, id, kind, time,
``max_parallelism``), which operators it has and how many bytes each blob
holds, in a ``format`` this module versions (1).

Every checkpoint carries a SHA-256 checksum over the canonical manifest
followed by every blob in manifest order. The manifest is hashed too, so a
changed size, id or time is caught as surely as a flipped bit in the data.
Reading a checkpoint back always verifies the checksum; ``latest()`` skips
one that fails, logs why on the ``streamlet.checkpoints`` logger, and falls
back to the one before. A job that quietly restored damaged state, or
quietly started from nothing while good checkpoints existed, would be worse
than one that says so.

Nothing here is a pickle: the manifest is JSON and the blobs are stored as
the bytes they are. The blobs themselves usually are pickles (the state
codec's), which is why every file is created owner-only (0600) and every
directory 0700: whoever can write a checkpoint can run code in the job that
restores it.

Two storages (``open_storage`` picks one from a URL):

* ``SQLiteCheckpointStorage``: WAL journal, ``synchronous=FULL``, one
  transaction per checkpoint, so a checkpoint is in the file whole or not
  at all.
* ``DirectoryCheckpointStorage``: one directory per checkpoint; the
  manifest is written last, through a temp file, fsync and rename, so a
  directory without one is a write that did not finish.

Both live in ``checkpoint_files.py``; this module holds what they share:
the data model, the manifest and its checksum, and the rules of the
interface (locking, checks, falling back past damage).

``write`` runs on a worker thread (``asyncio.to_thread``) while the event
loop may call the other methods, so every public method holds the storage's
lock.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from streamlet.errors import CheckpointError, StreamletConfigError

from .snapshots import OperatorState, Snapshot

FORMAT: Final = 1
KINDS: Final = ("checkpoint", "savepoint")
META_GROUP: Final = -1
"""The key group under which an operator's non-keyed part (``meta``) is filed."""

log = logging.getLogger("streamlet.checkpoints")


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``list()`` shows about a checkpoint, read from its manifest alone."""

    checkpoint_id: int
    job: str
    kind: str
    taken_at: int
    size: int
    """Bytes of state in all (meta and key groups of every operator)."""
    operator_sizes: dict[str, int]
    """Bytes per operator."""
    location: str
    """Where it is: the checkpoint's directory, or the SQLite file."""
    bases: dict[str, int] = dataclasses.field(default_factory=dict)
    """Operator -> the earlier checkpoint its incremental state builds on."""


class DamagedCheckpoint(Exception):
    """Raised by a storage's ``_load`` for a checkpoint that exists but cannot be used.

    Internal to the storages: ``read()`` turns it into a ``CheckpointError``
    and ``latest()`` into a warning and a fall-back, so ``reason`` says only
    what is wrong, and the caller adds which checkpoint it is.
    """

    def __init__(self, reason: str, location: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


# --- the manifest -------------------------------------------------------------------------


def describe(job: str, checkpoint_id: int) -> str:
    return f"checkpoint {checkpoint_id} of job {job!r}"


def check_snapshot(snapshot: Snapshot) -> None:
    """Refuse a snapshot that would be written but could not be restored.

    These are bugs in whatever built the snapshot, caught before a byte is
    written: a key group out of range would restore onto no worker.
    """
    what = f"cannot write {describe(snapshot.job, snapshot.checkpoint_id)}"
    if not isinstance(snapshot.job, str) or not snapshot.job:
        raise CheckpointError(f"cannot write a checkpoint for job {snapshot.job!r}: "
                              "a job name is a non-empty str")
    for field in ("checkpoint_id", "taken_at", "max_parallelism"):
        value = getattr(snapshot, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"{what}: {field} is {value!r}, not an int >= 0")
    if snapshot.max_parallelism < 1:
        raise CheckpointError(f"{what}: max_parallelism is 0; it is at least 1")
    if snapshot.kind not in KINDS:
        raise CheckpointError(f"{what}: kind is {snapshot.kind!r}, not one of {KINDS}")
    for name, state in snapshot.operators.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{what}: operator name {name!r} is not a non-empty str")
        # by shape, not isinstance: any object with these two fields will do
        if not isinstance(getattr(state, "key_groups", None), dict):
            raise CheckpointError(f"{what}: operator {name!r} has a "
                                  f"{type(state).__name__}, not an OperatorState")
        meta = getattr(state, "meta", None)
        if not isinstance(meta, bytes | bytearray | memoryview):
            raise CheckpointError(f"{what}: operator {name!r}: meta is a "
                                  f"{type(meta).__name__}, not bytes")
        for group, data in state.key_groups.items():
            if (not isinstance(group, int) or isinstance(group, bool)
                    or not 0 <= group < snapshot.max_parallelism):
                raise CheckpointError(
                    f"{what}: operator {name!r} has state for key group {group!r}, outside "
                    f"0..{snapshot.max_parallelism - 1} (max_parallelism "
                    f"{snapshot.max_parallelism})")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise CheckpointError(f"{what}: operator {name!r}, key group {group}: "
                                      f"a {type(data).__name__}, not bytes")


def blobs_of(snapshot: Snapshot) -> list[tuple[str, int, bytes]]:
    """Every blob as ``(operator, key group or META_GROUP, bytes)``, in manifest order:
    operators as the snapshot lists them, each one's meta, then its key groups ascending."""
    out: list[tuple[str, int, bytes]] = []
    for name, state in snapshot.operators.items():
        out.append((name, META_GROUP, state.meta))
        out.extend((name, group, state.key_groups[group]) for group in sorted(state.key_groups))
    return out


def manifest_of(snapshot: Snapshot, blobs: list[tuple[str, int, bytes]]) -> dict[str, Any]:
    """The manifest of a snapshot, without its checksum (which is computed over it)."""
    operators: dict[str, dict[str, Any]] = {}
    for name, group, data in blobs:
        entry = operators.setdefault(name, {"name": name, "meta": 0, "key_groups": [],
                                            "size": 0})
        if group == META_GROUP:
            entry["meta"] = len(data)
        else:
            entry["key_groups"].append([group, len(data)])
        entry["size"] += len(data)
    return {
        "format": FORMAT,
        "job": snapshot.job,
        "checkpoint_id": snapshot.checkpoint_id,
        "kind": snapshot.kind,
        "taken_at": snapshot.taken_at,
        "max_parallelism": snapshot.max_parallelism,
        "operators": list(operators.values()),
        "size": sum(entry["size"] for entry in operators.values()),
        "bases": dict(sorted(snapshot.bases.items())),
    }


def canonical(manifest: dict[str, Any]) -> bytes:
    """One byte string per manifest, so that parsing and re-encoding hashes the same."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("ascii")


def checksum(manifest: dict[str, Any], blobs: Iterable[bytes | bytearray | memoryview]) -> str:
    digest = hashlib.sha256(canonical(manifest))
    for data in blobs:
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def layout(manifest: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(operator, key group or META_GROUP, size)`` of every blob, in manifest order."""
    out: list[tuple[str, int, int]] = []
    for entry in manifest["operators"]:
        out.append((entry["name"], META_GROUP, entry["meta"]))
        out.extend((entry["name"], group, size) for group, size in entry["key_groups"])
    return out


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_manifest(text: bytes | str, location: str) -> dict[str, Any]:
    """Parse and check a manifest's shape; ``DamagedCheckpoint`` if it is not one.

    Checked field by field because a manifest drives the reading of the
    blobs: a wrong type here would otherwise surface as a ``TypeError`` deep
    in a restore, far from the file that caused it.
    """
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedCheckpoint(f"the manifest is not valid JSON ({exc})", location) from None
    if not isinstance(manifest, dict):
        raise DamagedCheckpoint("the manifest is not a JSON object", location)
    if manifest.get("format") != FORMAT:
        raise DamagedCheckpoint(
            f"the manifest is in format {manifest.get('format')!r}, and this version of "
            f"streamlet reads format {FORMAT}", location)

    def bad(field: str) -> DamagedCheckpoint:
        return DamagedCheckpoint(f"the manifest's {field!r} is missing or of the wrong type",
                                 location)

    for field in ("checkpoint_id", "taken_at", "max_parallelism", "size"):
        if not _is_count(manifest.get(field)):
            raise bad(field)
    for field in ("job", "kind"):
        if not isinstance(manifest.get(field), str):
            raise bad(field)
    if not isinstance(manifest.get("operators"), list):
        raise bad("operators")
    bases = manifest.get("bases", {})
    if not isinstance(bases, dict) or not all(
            isinstance(name, str) and _is_count(base) for name, base in bases.items()):
        raise bad("bases")
    total = 0
    for entry in manifest["operators"]:
        if (not isinstance(entry, dict) or not isinstance(entry.get("name"), str)
                or not _is_count(entry.get("meta")) or not _is_count(entry.get("size"))
                or not isinstance(entry.get("key_groups"), list)
                or not all(isinstance(pair, list) and len(pair) == 2
                           and _is_count(pair[0]) and _is_count(pair[1])
                           for pair in entry["key_groups"])):
            raise bad("operators")
        if entry["size"] != entry["meta"] + sum(size for _, size in entry["key_groups"]):
            raise DamagedCheckpoint(
                f"the manifest's size of operator {entry['name']!r} is not the sum of its "
                "blobs' sizes", location)
        total += entry["size"]
    if total != manifest["size"]:
        raise DamagedCheckpoint("the manifest's total size is not the sum of its operators'",
                                location)
    return manifest


def info_of(manifest: dict[str, Any], location: str) -> CheckpointInfo:
    return CheckpointInfo(
        checkpoint_id=manifest["checkpoint_id"], job=manifest["job"], kind=manifest["kind"],
        taken_at=manifest["taken_at"], size=manifest["size"],
        operator_sizes={entry["name"]: entry["size"] for entry in manifest["operators"]},
        location=location, bases=dict(manifest.get("bases", {})))


def snapshot_of(manifest: dict[str, Any], blobs: Iterable[tuple[str, int, bytes]]) -> Snapshot:
    operators: dict[str, tuple[bytes, dict[int, bytes]]] = {
        entry["name"]: (b"", {}) for entry in manifest["operators"]}
    for name, group, data in blobs:
        if group == META_GROUP:
            operators[name] = (data, operators[name][1])
        else:
            operators[name][1][group] = data
    return Snapshot(
        checkpoint_id=manifest["checkpoint_id"], job=manifest["job"], kind=manifest["kind"],
        taken_at=manifest["taken_at"], max_parallelism=manifest["max_parallelism"],
        operators={name: OperatorState(meta, groups) for name, (meta, groups)
                   in operators.items()},
        bases=dict(manifest.get("bases", {})))


def check_identity(manifest: dict[str, Any], job: str, checkpoint_id: int,
                   location: str) -> None:
    """A manifest found under one name but describing another checkpoint is damage
    (or a copied file): restoring it would restore the wrong state."""
    if manifest["job"] != job or manifest["checkpoint_id"] != checkpoint_id:
        raise DamagedCheckpoint(
            f"the manifest describes {describe(manifest['job'], manifest['checkpoint_id'])}, "
            "not this one", location)


def verify_checksum(manifest: dict[str, Any], expected: object,
                    blobs: Iterable[bytes | bytearray | memoryview], location: str) -> None:
    if not isinstance(expected, str):
        raise DamagedCheckpoint("the checkpoint has no checksum", location)
    actual = checksum(manifest, blobs)
    if actual != expected:
        raise DamagedCheckpoint(
            f"checksum mismatch: recorded {expected[:23]}..., the content hashes to "
            f"{actual[:23]}...; a byte of the state or of the manifest changed", location)


# --- the interface --------------------------------------------------------------------------


class CheckpointStorage(ABC):
    """Checkpoints of any number of jobs, by job name and checkpoint id.

    Subclasses implement the ``_``-methods; this class holds the lock, the
    checks, and the rule for falling back past a damaged checkpoint.
    """

    url: str
    """The URL or path this storage was opened with."""
    path: Path
    """The SQLite file or the directory."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self) -> CheckpointStorage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # the subclasses' part

    @abstractmethod
    def _write(self, snapshot: Snapshot, manifest: dict[str, Any], digest: str,
               blobs: list[tuple[str, int, bytes]]) -> str:
        """Store durably and atomically; return the location."""

    @abstractmethod
    def _ids(self, job: str) -> builtins.list[int]:
        """Every checkpoint id of the job that left any trace, complete or not."""

    @abstractmethod
    def _load(self, job: str, checkpoint_id: int) -> Snapshot | None:
        """The verified snapshot; None if there is no trace of it; DamagedCheckpoint."""

    @abstractmethod
    def _list(self, job: str | None) -> builtins.list[CheckpointInfo]:
        """The complete checkpoints, from their manifests alone."""

    @abstractmethod
    def _delete(self, job: str, checkpoint_id: int) -> bool:
        """Remove every trace of it; False if there was none."""

    def _close(self) -> None:  # noqa: B027 - a storage with nothing to release keeps this
        """Release what the storage holds open."""

    # the interface

    def write(self, snapshot: Snapshot) -> CheckpointInfo:
        """Store a checkpoint; it is durable, and whole, when this returns.

        Refuses (``CheckpointError``) to replace a complete checkpoint of the
        same job and id: ids increase per job, so a clash means two jobs share
        a name, and overwriting would destroy the other's state. The remains
        of a write that did not finish are replaced.
        """
        check_snapshot(snapshot)
        blobs = blobs_of(snapshot)
        manifest = manifest_of(snapshot, blobs)
        digest = checksum(manifest, (data for _, _, data in blobs))
        with self._lock:
            self._check_open()
            location = self._write(snapshot, manifest, digest, blobs)
        return info_of(manifest, location)

    def latest(self, job: str) -> Snapshot | None:
        """The newest complete, undamaged checkpoint or savepoint of ``job``.

        Damaged ones are skipped with a WARNING on ``streamlet.checkpoints``
        naming each, why, and which one is used instead. None (logged) when
        there is no usable one.
        """
        with self._lock:
            self._check_open()
            damaged: builtins.list[tuple[int, DamagedCheckpoint]] = []
            for checkpoint_id in sorted(self._ids(job), reverse=True):
                try:
                    snapshot = self._load(job, checkpoint_id)
                except DamagedCheckpoint as damage:
                    damaged.append((checkpoint_id, damage))
                    continue
                if snapshot is None:  # deleted since _ids() looked
                    continue
                for bad_id, exc in damaged:
                    log.warning("%s at %s is damaged: %s; using %s instead",
                                describe(job, bad_id), exc.location, exc.reason,
                                describe(job, checkpoint_id))
                return snapshot
            for bad_id, exc in damaged:
                log.warning("%s at %s is damaged: %s; no earlier checkpoint is usable",
                            describe(job, bad_id), exc.location, exc.reason)
            if damaged:
                log.warning("no usable checkpoint of job %r in %s: all %d are damaged; "
                            "the job starts without state", job, self.url, len(damaged))
            else:
                log.info("no checkpoint of job %r in %s", job, self.url)
            return None

    def read(self, job: str, checkpoint_id: int) -> Snapshot:
        """One checkpoint, verified; ``CheckpointError`` saying why if missing or damaged."""
        with self._lock:
            self._check_open()
            try:
                snapshot = self._load(job, checkpoint_id)
            except DamagedCheckpoint as exc:
                raise CheckpointError(
                    f"{describe(job, checkpoint_id)} at {exc.location} is damaged: "
                    f"{exc.reason}. Restore from another one (streamlet checkpoints list "
                    f"{self.url}) and delete this one") from None
            if snapshot is None:
                raise CheckpointError(self._missing(job, checkpoint_id))
            return snapshot

    def next_id(self, job: str) -> int:
        """The id for the job's next checkpoint: above every id that left a trace,
        damaged and unfinished ones included, so that no write clashes with them."""
        with self._lock:
            self._check_open()
            return max(self._ids(job), default=0) + 1

    def list(self, job: str | None = None) -> builtins.list[CheckpointInfo]:
        """Complete checkpoints (of one job, or of all), each job's oldest first.

        Reads manifests only, so it is cheap and does not verify checksums;
        a checkpoint listed here can still turn out damaged when read.
        """
        with self._lock:
            self._check_open()
            return sorted(self._list(job), key=lambda info: (info.job, info.checkpoint_id))

    def delete(self, job: str, checkpoint_id: int) -> None:
        """Remove a checkpoint or savepoint, complete or not; ``CheckpointError`` if absent."""
        with self._lock:
            self._check_open()
            if not self._delete(job, checkpoint_id):
                raise CheckpointError(self._missing(job, checkpoint_id))

    def prune(self, job: str, retain: int) -> builtins.list[int]:
        """Delete all but the newest ``retain`` checkpoints of ``job``; return their ids.

        Savepoints are never pruned (the user asked for them), nor are
        unfinished or unreadable checkpoints, whose kind cannot be known:
        ``delete`` removes those. Checksums are not verified here, so a
        damaged checkpoint counts towards ``retain``; keep ``retain`` >= 2 to
        keep a fall-back.
        """
        if not isinstance(retain, int) or isinstance(retain, bool) or retain < 0:
            raise StreamletConfigError(f"retain is the number of checkpoints to keep, an "
                                       f"int >= 0, not {retain!r}")
        with self._lock:
            self._check_open()
            infos = {info.checkpoint_id: info for info in self._list(job) if info.job == job}
            ids = sorted(i for i, info in infos.items() if info.kind == "checkpoint")
            dropped = ids[:max(0, len(ids) - retain)]
            # an incremental checkpoint needs the ones it builds on: keep those
            needed: set[int] = set()
            todo = [i for i in infos if i not in dropped]
            while todo:
                info = infos.get(todo.pop())
                for base in [] if info is None else info.bases.values():
                    if base not in needed:
                        needed.add(base)
                        todo.append(base)
            dropped = [i for i in dropped if i not in needed]
            for checkpoint_id in dropped:
                self._delete(job, checkpoint_id)
            return dropped

    def close(self) -> None:
        """Release the storage; using it afterwards raises ``CheckpointError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"checkpoint storage {self.url} is closed")

    def _missing(self, job: str, checkpoint_id: int) -> str:
        ids = [info.checkpoint_id for info in self._list(job) if info.job == job]
        there = (f"job {job!r} has checkpoints {_ranges(ids)}" if ids
                 else f"it has no checkpoint of job {job!r}")
        return f"no {describe(job, checkpoint_id)} in {self.url}: {there}"


def _ranges(ids: builtins.list[int]) -> str:
    """``1-3, 7`` rather than a thousand numbers in an error message."""
    parts: builtins.list[str] = []
    for n in sorted(ids):
        if parts and parts[-1].rsplit("-", 1)[-1] == str(n - 1):
            parts[-1] = parts[-1].split("-")[0] + f"-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


# --- open_storage ---------------------------------------------------------------------------

_FORMS: Final = ("use sqlite:///relative/path.db or sqlite:////absolute/path.db (SQLAlchemy's "
                 "convention: three slashes, then the path), file:///absolute/dir, or a plain "
                 "path (ending in .db for a SQLite file, anything else for a directory)")
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_storage(url: str) -> CheckpointStorage:
    """The checkpoint storage at ``url``; nothing is created until the first write.

    * ``sqlite:///ckpt/job.db`` - a SQLite file, relative to the working
      directory; ``sqlite:////var/lib/job.db`` - absolute (SQLAlchemy's
      convention: the path follows three slashes, so an absolute path
      starts with a fourth). The path is taken as written, not %-decoded.
    * ``file:///var/lib/ckpt`` - a directory (an absolute path, %-decoded
      as ``file:`` URLs are; ``file://localhost/...`` too).
    * a plain path: a SQLite file if it ends in ``.db``, else a directory.

    Anything else raises ``StreamletConfigError`` listing these forms.
    """
    if not isinstance(url, str) or not url.strip():
        raise StreamletConfigError(f"checkpoint storage {url!r} is empty; {_FORMS}")
    scheme = _SCHEME.match(url)
    if url.startswith("sqlite:"):
        raw = url[len("sqlite:"):]
        if not raw.startswith("///") or len(raw) == 3 or "?" in raw or "#" in raw:
            raise StreamletConfigError(f"checkpoint storage {url!r}: a sqlite URL is "
                                       f"sqlite:///path with no options; {_FORMS}")
        return _sqlite(url, Path(raw[3:]))
    if url.startswith("file:"):
        parts = urlsplit(url)
        if (not url.startswith("file://") or parts.netloc not in ("", "localhost")
                or not parts.path.startswith("/") or parts.query or parts.fragment):
            raise StreamletConfigError(f"checkpoint storage {url!r}: a file URL is "
                                       f"file:///absolute/dir; {_FORMS}")
        return _directory(url, Path(unquote(parts.path)))
    if scheme:
        raise StreamletConfigError(f"checkpoint storage {url!r}: scheme {scheme.group(1)!r} "
                                   f"is not supported; {_FORMS}")
    if url.endswith(".db"):
        return _sqlite(url, Path(url))
    return _directory(url, Path(url))


def _sqlite(url: str, path: Path) -> CheckpointStorage:
    # here, not at the top: checkpoint_files builds on this module
    from .checkpoint_files import SQLiteCheckpointStorage  # noqa: PLC0415

    if path.is_dir():
        raise StreamletConfigError(f"checkpoint storage {url!r}: {path} is a directory, not a "
                                   "SQLite file; use file://... for a directory storage")
    return SQLiteCheckpointStorage(url, path.absolute())


def _directory(url: str, path: Path) -> CheckpointStorage:
    # here, not at the top: checkpoint_files builds on this module
    from .checkpoint_files import DirectoryCheckpointStorage  # noqa: PLC0415

    if path.exists() and not path.is_dir():
        raise StreamletConfigError(f"checkpoint storage {url!r}: {path} is a file, not a "
                                   "directory; a SQLite storage's name ends in .db")
    return DirectoryCheckpointStorage(url, path.absolute())

