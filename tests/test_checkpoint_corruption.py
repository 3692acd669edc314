"""A damaged newest checkpoint: the job restores from the one before, says so,
and still commits its output exactly once.

A small keyed job (``from_iterable`` -> a map that moves a ``ManualClock``
one ms per record -> a running keyed sum -> ``to_files``) takes a checkpoint
every 8 records and fails once the part files of its third checkpoint are
committed. The test then damages the newest checkpoint the way disks and
people do (cut it short, flip a byte, delete its manifest; in a SQLite
storage the manifest is the checkpoint's row) and runs the job again.

The restarted job must skip the damaged checkpoint with a WARNING naming it
and the one used instead, restore from the one before (INFO "restored from
checkpoint N-1"), and end with the committed output of a run that never
failed. That last part is not free: the part files that the damaged
checkpoint committed are already visible when the job falls back past it, and
the replay must replace them, not add to them.

Checkpoint writes run in a worker thread while records flow, so how many
records pass during a write is a matter of thread timing. To make the
checkpoints fall on the same records every run, the map waits (on the
checkpoint log, not on a timer) while a checkpoint is being written.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_checkpoints import committed, hidden

import streamlet as sl
from streamlet.state.checkpoint_storage import open_storage
from streamlet.testing import ManualClock

JOB = "corrupt"
RECORDS = [(f"k{i % 3}", i) for i in range(120)]
INTERVAL_MS = 8
FAIL_AFTER_PARTS = 3
"""The first run fails on the first record after this many part files are committed:
after its third checkpoint, whose part file is then visible."""

WRITING = re.compile(r"^writing checkpoint (\d+) ")
COMPLETE = re.compile(r"^checkpoint (\d+) of job .* complete")


class CheckpointWatch(logging.Handler):
    """Follows the checkpoint log of a run: whether a write is in progress."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.idle = asyncio.Event()
        self.idle.set()

    def emit(self, record: logging.LogRecord) -> None:
        # The coordinator logs both lines on the event loop's thread.
        message = record.getMessage()
        if WRITING.match(message):
            self.idle.clear()
        elif COMPLETE.match(message):
            self.idle.set()


def storage_url(base: Path, kind: str) -> str:
    return (f"sqlite:///{base / 'checkpoints.db'}" if kind == "sqlite"
            else f"file://{base / 'checkpoints'}")


def run(base: Path, kind: str, *, fail: bool = False, interval: int = INTERVAL_MS) -> None:
    """Run the job with its output in ``base / "out"``; with ``fail``, fail once
    ``FAIL_AFTER_PARTS`` part files are committed."""
    out = base / "out"
    clock = ManualClock(0)
    watch = CheckpointWatch()
    p = sl.Pipeline(JOB, batch_size=4, clock=clock, checkpointing=sl.Checkpointing(
        interval=interval, storage=storage_url(base, kind)))

    async def tick(record: tuple[str, int]) -> tuple[str, int]:
        await watch.idle.wait()  # no records pass while a checkpoint is written
        if fail and len(list(out.glob("part-*"))) >= FAIL_AFTER_PARTS:
            raise RuntimeError("crash")
        clock.advance(1)
        return record

    (p.from_iterable(RECORDS, name="records").map(tick, name="tick")
     .key_by(lambda r: r[0], name="by_key")
     .reduce(lambda a, b: (a[0], a[1] + b[1]), name="sums")
     .to_files(out, name="files"))
    log = logging.getLogger("streamlet.checkpoints")
    level = log.level
    log.setLevel(logging.DEBUG)  # the watch needs the "writing checkpoint" lines
    log.addHandler(watch)
    try:
        p.run()
    finally:
        log.removeHandler(watch)
        log.setLevel(level)


# --- the damage ---------------------------------------------------------------------------


def _largest_blob(db: sqlite3.Connection, checkpoint_id: int) -> tuple[int, bytes]:
    rowid, data = db.execute(
        "SELECT rowid, data FROM blobs WHERE job = ? AND checkpoint_id = ? "
        "ORDER BY length(data) DESC, rowid LIMIT 1", (JOB, checkpoint_id)).fetchone()
    return rowid, data


def _edit_sqlite(path: Path, edit: Callable[[sqlite3.Connection], None]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        edit(db)
        db.execute("COMMIT")
    finally:
        db.close()


def truncate(kind: str, location: Path, checkpoint_id: int) -> None:
    """Cut the checkpoint's data to half its length."""
    if kind == "sqlite":
        def cut(db: sqlite3.Connection) -> None:
            rowid, data = _largest_blob(db, checkpoint_id)
            db.execute("UPDATE blobs SET data = ? WHERE rowid = ?", (data[:len(data) // 2], rowid))
        _edit_sqlite(location, cut)
    else:
        data = location / "state.bin"
        with data.open("r+b") as f:
            f.truncate(data.stat().st_size // 2)


def flip_byte(kind: str, location: Path, checkpoint_id: int) -> None:
    """Invert one byte in the middle of the checkpoint's data; its length stays."""
    def flipped(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]

    if kind == "sqlite":
        def flip(db: sqlite3.Connection) -> None:
            rowid, data = _largest_blob(db, checkpoint_id)
            db.execute("UPDATE blobs SET data = ? WHERE rowid = ?", (flipped(data), rowid))
        _edit_sqlite(location, flip)
    else:
        data = location / "state.bin"
        data.write_bytes(flipped(data.read_bytes()))


def delete_manifest(kind: str, location: Path, checkpoint_id: int) -> None:
    """Remove what says the checkpoint exists and what is in it; its data stays."""
    if kind == "sqlite":
        _edit_sqlite(location, lambda db: db.execute(
            "DELETE FROM checkpoints WHERE job = ? AND id = ?", (JOB, checkpoint_id)))
    else:
        (location / "_manifest.json").unlink()


DAMAGE = {"truncate": truncate, "flip_byte": flip_byte, "delete_manifest": delete_manifest}


def complete_checkpoints(base: Path, kind: str) -> dict[int, Path]:
    """Each complete checkpoint's id and location (the SQLite file, or its directory)."""
    with open_storage(storage_url(base, kind)) as storage:
        return {info.checkpoint_id: Path(info.location) for info in storage.list(JOB)}


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """What a run that never fails commits."""
    base = tmp_path_factory.mktemp("clean")
    run(base, "sqlite")
    rows = committed(base / "out")
    assert len(rows) == len(RECORDS)
    return rows


def crashed_run(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
                ) -> tuple[dict[int, Path], int]:
    """The job crashes after several checkpoints: those, and the newest one's id."""
    caplog.set_level(logging.DEBUG, "streamlet.checkpoints")
    with pytest.raises(sl.UserFunctionError, match="crash"):
        run(tmp_path, kind, fail=True)
    checkpoints = complete_checkpoints(tmp_path, kind)
    newest = max(checkpoints)
    assert newest >= 3, checkpoints
    return checkpoints, newest


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_output_stays_exactly_once(
        kind: str, damage: str, tmp_path: Path, expected: list[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    checkpoints, newest = crashed_run(tmp_path, kind, caplog)
    before = committed(tmp_path / "out")
    # the newest checkpoint's part file is committed: falling back past it must
    # replace it, not add to it
    assert len(list((tmp_path / "out").glob("part-*"))) >= FAIL_AFTER_PARTS
    assert before == expected[:len(before)]
    assert 0 < len(before) < len(expected)

    DAMAGE[damage](kind, checkpoints[newest], newest)
    caplog.clear()
    run(tmp_path, kind)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"checkpoint {newest} of job {JOB!r}" in message and "damaged" in message
               and f"using checkpoint {newest - 1} of job {JOB!r} instead" in message
               for message in warnings), warnings
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"job {JOB!r} restored from checkpoint {newest - 1}" in infos, infos
    assert committed(tmp_path / "out") == expected
    assert hidden(tmp_path / "out") == []



@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_falling_back_past_two_damaged_checkpoints_commits_no_record_twice(
        kind: str, tmp_path: Path, expected: list[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """Found by this file: the part files the two damaged checkpoints had committed
    stayed visible, and a replay that cut its output into fewer parts (a longer
    interval, so one final part) left the old part-00000002 beside it: 8 records
    twice. The sink now removes, on start, the part files it does not continue."""
    checkpoints, newest = crashed_run(tmp_path, kind, caplog)
    for checkpoint_id in (newest, newest - 1):  # they committed part files 1 and 2
        delete_manifest(kind, checkpoints[checkpoint_id], checkpoint_id)
    caplog.clear()
    run(tmp_path, kind, interval=10_000)  # no checkpoint before the final one
    assert f"job {JOB!r} restored from checkpoint {newest - 2}" in caplog.text
    parts = {p.name: len(p.read_text().splitlines())
             for p in sorted((tmp_path / "out").glob("part-*"))}
    assert committed(tmp_path / "out") == expected, parts
