"""An exactly-once file sink: ``stream.to_files(directory, format="jsonl")``.

Each transaction is one part file. Records are appended to a hidden file
(``.part-<attempt>-<n>.inprogress``); at a checkpoint barrier it is flushed,
fsynced and closed (pre-commit); when the checkpoint completes it is renamed
to its visible name ``part-<n>.<format>`` and the directory fsynced (commit).
Readers that skip names starting with ``.`` see only committed output. The
visible names count up from the checkpoint's state, so a restored job gives
its part files the same names a failure-free run would have.

With ``workers=N`` (N > 1) every worker writes the same directory, and its
names carry its subtask: ``part-<subtask>-<n>.<format>`` and
``.part-<subtask>-<attempt>-<n>.inprogress``. Each worker cleans up only
files of its own subtask; worker 0 also those of subtasks that no longer
exist (after a restore with fewer workers) and those of a run with one
worker. A restore with another number of workers starts every counter at
the highest of the old ones, so no committed name is written twice.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from streamlet.core.two_phase import TwoPhaseCommitSink
from streamlet.errors import CheckpointError, StreamletConfigError, short_repr

FORMATS = ("jsonl", "text")
# committed and in-progress names, with the subtask when the job had several
_PART = re.compile(r"part-(?:(\d+)-)?(\d+)\.[a-z]+")
_HIDDEN = re.compile(r"\.part-(?:(\d+)-)?[0-9a-f]+-\d+\.inprogress")


def _jsonl(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


def _text(value: Any) -> bytes:
    return f"{value}\n".encode()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileTransaction:
    """One part file: where it is written, and the name it is committed under."""

    __slots__ = ("final", "hidden")

    def __init__(self, hidden: str, final: str) -> None:
        self.hidden = hidden
        self.final = final

    def __getstate__(self) -> tuple[str, str]:
        return (self.hidden, self.final)

    def __setstate__(self, state: tuple[str, str]) -> None:
        self.hidden, self.final = state

    def __repr__(self) -> str:
        return f"FileTransaction({self.hidden!r} -> {self.final!r})"


class FileSink(TwoPhaseCommitSink[FileTransaction]):
    def __init__(self, directory: str | os.PathLike[str], format: str, operator: str) -> None:
        if format not in FORMATS:
            raise StreamletConfigError(
                f"to_files(format={format!r}): the formats are {', '.join(FORMATS)}")
        self.directory = Path(directory)
        self.format = format
        self.operator = operator
        self.encode: Callable[[Any], bytes] = _jsonl if format == "jsonl" else _text
        self.next_part = 0
        self.attempt = uuid.uuid4().hex[:12]
        self.subtask = 0
        self.parallelism = 1
        self._file: BinaryIO | None = None

    def open_subtask(self, subtask: int, parallelism: int) -> None:
        self.subtask = subtask
        self.parallelism = parallelism

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def prefix(self) -> str:
        """What this subtask's names start with after ``part-``: nothing with one worker."""
        return "" if self.parallelism == 1 else f"{self.subtask}-"

    def _cleans(self, subtask: int | None) -> bool:
        """Whether clean-up here removes leftovers of ``subtask`` (None: a run with
        one worker): its own; subtask 0 also those of a run with one worker and
        of subtasks that no longer exist."""
        if self.subtask != 0:
            return subtask == self.subtask
        return subtask is None or subtask == 0 or subtask >= self.parallelism \
            or self.parallelism == 1

    def begin_transaction(self) -> FileTransaction:
        n = self.next_part
        self.next_part += 1
        transaction = FileTransaction(f".part-{self.prefix}{self.attempt}-{n:08d}.inprogress",
                                      f"part-{self.prefix}{n:08d}.{self.format}")
        self._file = open(self.directory / transaction.hidden, "wb")  # noqa: SIM115  # kept open across batches
        return transaction

    def write(self, transaction: FileTransaction, values: list[Any]) -> None:
        encode = self.encode
        try:
            data = b"".join(map(encode, values))
        except TypeError as exc:
            bad = next(v for v in values if not self._encodes(v))
            raise CheckpointError(
                f"operator {self.operator!r}: cannot write {short_repr(bad)} as {self.format}: "
                f"{exc}. Map records to plain data (dicts, lists, str, numbers) before "
                "to_files().") from exc
        assert self._file is not None
        self._file.write(data)

    def _encodes(self, value: Any) -> bool:
        try:
            self.encode(value)
        except TypeError:
            return False
        return True

    def pre_commit(self, transaction: FileTransaction) -> None:
        file = self._file
        if file is not None:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self._file = None

    def commit(self, transaction: FileTransaction) -> None:
        hidden = self.directory / transaction.hidden
        final = self.directory / transaction.final
        if hidden.exists():
            os.replace(hidden, final)
            _fsync_directory(self.directory)
        elif not final.exists():
            raise CheckpointError(
                f"operator {self.operator!r}: part file {transaction.hidden} is to be "
                f"committed as {transaction.final}, but neither is in {self.directory}; "
                "were files removed from the output directory while the job was down?")

    def abort(self, transaction: FileTransaction) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        (self.directory / transaction.hidden).unlink(missing_ok=True)

    def clean_up(self, known: list[FileTransaction]) -> None:
        """Remove what this run does not continue: hidden files no checkpoint knows
        of, and part files numbered from ``next_part`` on. Those were committed by
        checkpoints newer than the one restored (a fallback past damaged ones, a
        start from an older savepoint, a start without state): the replay writes
        their records again, maybe cut at other places, so keeping them would
        show some records twice.

        Only files of the subtasks ``_cleans`` gives this one are touched, so
        workers starting together leave each other's alone. Every part file of
        this subtask left on disk is numbered below ``next_part``, so no name is
        written twice. That removing the ones above is safe across restores with
        other numbers of workers: ``merge_states`` takes the highest counter, so
        every counter is above all the part files (of any subtask) that the
        checkpoints it descends from committed."""
        keep = {t.hidden for t in known}
        for path in self.directory.glob(".part-*"):
            hidden = _HIDDEN.fullmatch(path.name)
            subtask = None if hidden is None or hidden.group(1) is None else int(hidden.group(1))
            if path.name not in keep and self._cleans(subtask):
                path.unlink(missing_ok=True)
        for path in self.directory.glob("part-*"):
            part = _PART.fullmatch(path.name)
            if part is not None and int(part.group(2)) >= self.next_part and self._cleans(
                    None if part.group(1) is None else int(part.group(1))):
                path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def state(self) -> int:
        return self.next_part

    def restore(self, state: Any) -> None:
        self.next_part = state

    def merge_states(self, states: list[Any]) -> int:
        """Above every old subtask's counter: no name any of them used comes again."""
        return max((s for s in states if s is not None), default=0)
