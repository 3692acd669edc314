"""Checkpoint storage: one contract for the SQLite file and the directory, and damage.

Every test taking the ``storage`` fixture runs against both storages, on
real files under ``tmp_path``. The damage tests break a checkpoint the way a
disk or a person would (cut a file short, flip one bit, delete the manifest
or the row) and hold ``latest()`` to falling back to the one before, saying
which one was damaged, why, and which one it used instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamlet.errors import CheckpointError, StreamletConfigError
from streamlet.state.checkpoint_files import DirectoryCheckpointStorage, SQLiteCheckpointStorage
from streamlet.state.checkpoint_storage import (
    CheckpointStorage,
    OperatorState,
    Snapshot,
    open_storage,
)

JOB = "clicks"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
LOGGER = "streamlet.checkpoints"


def snapshot(checkpoint_id: int, job: str = JOB, kind: str = "checkpoint",
             groups: int = 4) -> Snapshot:
    """A snapshot whose bytes differ per checkpoint, so a mix-up cannot pass."""
    tag = f"{job}/{checkpoint_id}".encode()
    return Snapshot(
        checkpoint_id=checkpoint_id, job=job, kind=kind, taken_at=T0 + checkpoint_id * 1000,
        max_parallelism=128,
        operators={
            "source": OperatorState(meta=b"offset=" + tag, key_groups={}),
            "totals": OperatorState(meta=b"", key_groups={
                g * 31 % 128: tag + bytes([g]) * (100 + g) for g in range(groups)}),
            "stateless": OperatorState(meta=b"", key_groups={}),
        })


def _open(kind: str, tmp_path: Path) -> CheckpointStorage:
    return open_storage(str(tmp_path / ("ck.db" if kind == "sqlite" else "ck")))


@pytest.fixture(params=["sqlite", "directory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStorage]:
    opened = _open(request.param, tmp_path)
    yield opened
    opened.close()


# --- the contract -------------------------------------------------------------------------


def test_a_checkpoint_reads_back_byte_for_byte(storage: CheckpointStorage) -> None:
    every_group = Snapshot(7, JOB, "savepoint", T0, 128, {
        "big": OperatorState(os.urandom(1000), {g: os.urandom(g * 50) for g in range(128)}),
        "empty": OperatorState(b"", {}),
        "nul": OperatorState(b"\x00" * 3, {0: b"", 127: b"\x00\xff"}),
    })
    info = storage.write(every_group)
    got = storage.read(JOB, 7)
    assert got == every_group
    assert list(got.operators) == ["big", "empty", "nul"]  # operators keep their order
    for name, state in got.operators.items():
        assert state.meta == every_group.operators[name].meta
        assert state.key_groups == every_group.operators[name].key_groups
        assert all(type(data) is bytes for data in state.key_groups.values())
    assert storage.latest(JOB) == every_group
    expected_size = sum(len(s.meta) + sum(map(len, s.key_groups.values()))
                        for s in every_group.operators.values())
    assert info.size == expected_size
    assert info.operator_sizes["empty"] == 0
    assert info.operator_sizes["nul"] == 5
    assert (info.checkpoint_id, info.job, info.kind, info.taken_at) == (7, JOB, "savepoint", T0)
    assert storage.list() == [info]


def test_latest_is_the_newest_and_jobs_do_not_mix(storage: CheckpointStorage) -> None:
    for n in (1, 2, 3):
        storage.write(snapshot(n))
    storage.write(snapshot(9, job="other"))
    assert storage.latest(JOB) == snapshot(3)
    assert storage.latest("other") == snapshot(9, job="other")
    assert storage.latest("nobody") is None
    assert [(i.job, i.checkpoint_id) for i in storage.list()] == [
        (JOB, 1), (JOB, 2), (JOB, 3), ("other", 9)]
    assert [i.checkpoint_id for i in storage.list(JOB)] == [1, 2, 3]
    assert storage.list("nobody") == []


def test_prune_keeps_the_newest_checkpoints_and_every_savepoint(
        storage: CheckpointStorage) -> None:
    savepoints = {3, 7}
    for n in range(1, 13):
        storage.write(snapshot(n, kind="savepoint" if n in savepoints else "checkpoint"))
    storage.write(snapshot(1, job="other"))
    assert storage.prune(JOB, 3) == [1, 2, 4, 5, 6, 8, 9]
    assert [i.checkpoint_id for i in storage.list(JOB)] == [3, 7, 10, 11, 12]
    assert storage.prune(JOB, 3) == []
    assert storage.latest(JOB) == snapshot(12)
    assert storage.prune(JOB, 0) == [10, 11, 12]
    assert [i.checkpoint_id for i in storage.list(JOB)] == [3, 7]
    assert storage.latest(JOB) == snapshot(7, kind="savepoint")  # a savepoint restores too
    assert [i.checkpoint_id for i in storage.list("other")] == [1]
    assert storage.prune("other", 5) == []  # fewer than retain: nothing goes
    assert storage.prune("nobody", 1) == []
    for bad in (-1, 1.5, True):
        with pytest.raises(StreamletConfigError, match="retain is the number of checkpoints"):
            storage.prune(JOB, bad)  # type: ignore[arg-type]


def test_delete_and_what_missing_checkpoints_say(storage: CheckpointStorage) -> None:
    for n in (1, 2, 3, 5):
        storage.write(snapshot(n))
    storage.delete(JOB, 2)
    assert [i.checkpoint_id for i in storage.list(JOB)] == [1, 3, 5]
    with pytest.raises(CheckpointError, match=r"no checkpoint 2 of job 'clicks' in .*: "
                                              r"job 'clicks' has checkpoints 1, 3, 5"):
        storage.read(JOB, 2)
    with pytest.raises(CheckpointError, match="no checkpoint 2 of job 'clicks'"):
        storage.delete(JOB, 2)
    storage.write(snapshot(6))
    with pytest.raises(CheckpointError, match="it has no checkpoint of job 'nobody'"):
        storage.read("nobody", 1)
    with pytest.raises(CheckpointError, match="has checkpoints 1, 3, 5-6"):
        storage.read(JOB, 4)


def test_an_existing_checkpoint_is_never_overwritten(storage: CheckpointStorage) -> None:
    storage.write(snapshot(1))
    with pytest.raises(CheckpointError, match="checkpoint 1 of job 'clicks' already exists"):
        storage.write(snapshot(1, groups=9))
    assert storage.read(JOB, 1) == snapshot(1)


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "backup"}, "kind is 'backup', not one of"),
    ({"checkpoint_id": -1}, "checkpoint_id is -1, not an int >= 0"),
    ({"job": ""}, "a job name is a non-empty str"),
    ({"operators": {"op": OperatorState(b"", {128: b"x"})}},
     "operator 'op' has state for key group 128, outside 0..127"),
    ({"operators": {"op": OperatorState(b"", {1: "text"})}},  # type: ignore[dict-item]
     "operator 'op', key group 1: a str, not bytes"),
    ({"operators": {"op": {"meta": b""}}}, "operator 'op' has a dict, not an OperatorState"),
])
def test_a_snapshot_that_could_not_be_restored_is_refused(
        storage: CheckpointStorage, change: dict[str, object], message: str) -> None:
    fields = {**snapshot(1).__dict__, **change}
    with pytest.raises(CheckpointError, match=message):
        storage.write(Snapshot(**fields))  # type: ignore[arg-type]
    assert storage.list() == []


def test_any_job_name_stays_inside_the_storage(storage: CheckpointStorage,
                                               tmp_path: Path) -> None:
    names = ["../escape", "a/b", ".", "..", ".hidden", "sp ace", "ünï", "A", "a"]
    for n, name in enumerate(names, 1):
        storage.write(snapshot(n, job=name))
    for n, name in enumerate(names, 1):
        assert storage.read(name, n) == snapshot(n, job=name)
        assert storage.latest(name) == snapshot(n, job=name)
    assert {p.name.split("-")[0] for p in tmp_path.iterdir()} in ({"ck.db"}, {"ck"})


async def test_writes_from_worker_threads_while_the_loop_reads(
        storage: CheckpointStorage) -> None:
    """``write`` runs in ``asyncio.to_thread`` beside the event loop: the lock keeps it whole."""
    async def reader() -> int:
        reads = 0
        for _ in range(20):
            await asyncio.to_thread(storage.list, JOB)
            latest = await asyncio.to_thread(storage.latest, JOB)
            assert latest is None or latest == snapshot(latest.checkpoint_id, groups=32)
            reads += 1
        return reads

    results = await asyncio.gather(
        *(asyncio.to_thread(storage.write, snapshot(n, groups=32)) for n in range(1, 17)),
        reader())
    assert [i.checkpoint_id for i in storage.list(JOB)] == list(range(1, 17))
    assert results[-1] == 20
    for n in range(1, 17):
        assert storage.read(JOB, n) == snapshot(n, groups=32)


def test_a_closed_storage_refuses_use(storage: CheckpointStorage) -> None:
    storage.write(snapshot(1))
    storage.close()
    storage.close()  # twice is fine
    with pytest.raises(CheckpointError, match="is closed"):
        storage.latest(JOB)
    with pytest.raises(CheckpointError, match="is closed"):
        storage.write(snapshot(2))


def test_reading_where_nothing_is_creates_nothing(tmp_path: Path) -> None:
    for name in ("absent.db", "absent"):
        with open_storage(str(tmp_path / name)) as storage:
            assert storage.list() == []
            assert storage.latest(JOB) is None
            with pytest.raises(CheckpointError, match="no checkpoint 1 of job 'clicks'"):
                storage.read(JOB, 1)
            assert storage.prune(JOB, 1) == []
        assert not (tmp_path / name).exists()


# --- on disk ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="no owner-only mode bits on Windows")
def test_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "deep" / "ck.db")) as storage:
        storage.write(snapshot(1))
        files = list((tmp_path / "deep").iterdir())
        assert {p.name for p in files} >= {"ck.db", "ck.db-wal"}  # WAL, while open
        for path in files:
            assert _mode(path) == 0o600, path


@pytest.mark.skipif(sys.platform == "win32", reason="no owner-only mode bits on Windows")
def test_directory_files_are_owner_only(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "ck")) as storage:
        info = storage.write(snapshot(1))
    chk = Path(info.location)
    assert chk == tmp_path / "ck" / JOB / "chk-000001"
    assert sorted(p.name for p in chk.iterdir()) == ["_manifest.json", "state.bin"]
    for directory in (tmp_path / "ck", tmp_path / "ck" / JOB, chk):
        assert _mode(directory) == 0o700, directory
    for path in chk.iterdir():
        assert _mode(path) == 0o600, path


def test_manifests_carry_format_operator_names_sizes_and_checksum(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "ck")) as directory:
        info = directory.write(snapshot(1))
    with open_storage(str(tmp_path / "ck.db")) as sqlite:
        sqlite.write(snapshot(1))
    from_dir = json.loads((Path(info.location) / "_manifest.json").read_text())
    with sqlite3.connect(tmp_path / "ck.db") as conn:
        text, digest = conn.execute("SELECT manifest, checksum FROM checkpoints").fetchone()
    conn.close()
    from_db = {**json.loads(text), "checksum": digest}
    assert from_dir == from_db  # one manifest, one checksum, whichever storage
    assert from_dir["format"] == 1
    assert from_dir["checksum"].startswith("sha256:") and len(from_dir["checksum"]) == 71
    assert [op["name"] for op in from_dir["operators"]] == ["source", "totals", "stateless"]
    assert {op["name"]: op["size"] for op in from_dir["operators"]} == info.operator_sizes


# --- damage: the directory ----------------------------------------------------------------


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _dir_storage_with_three(tmp_path: Path) -> tuple[CheckpointStorage, Path]:
    storage = open_storage(str(tmp_path / "ck"))
    for n in (1, 2, 3):
        storage.write(snapshot(n))
    return storage, tmp_path / "ck" / JOB / "chk-000003"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


DIRECTORY_DAMAGE = {
    "truncated data file": (lambda chk: _truncate(chk / "state.bin"),
                            r"its data file state.bin is \d+ bytes, the manifest says \d+: "
                            r"it was cut short"),
    "flipped byte in the data": (lambda chk: _flip(chk / "state.bin", 150),
                                 "checksum mismatch"),
    "flipped byte in the first blob": (lambda chk: _flip(chk / "state.bin", 0),
                                       "checksum mismatch"),
    "flipped digit in the manifest": (
        lambda chk: (chk / "_manifest.json").write_text(
            (chk / "_manifest.json").read_text().replace('"taken_at":1704067203000',
                                                         '"taken_at":1704067203001')),
        "checksum mismatch"),
    "flipped byte breaking the manifest": (lambda chk: _flip(chk / "_manifest.json", 0),
                                           "the manifest is not valid JSON"),
    "deleted manifest": (lambda chk: (chk / "_manifest.json").unlink(),
                         "it has no _manifest.json: its write did not finish, or the "
                         "manifest was deleted"),
    "deleted data file": (lambda chk: (chk / "state.bin").unlink(),
                          "its data file state.bin is missing"),
    "manifest of a newer format": (
        lambda chk: (chk / "_manifest.json").write_text(
            (chk / "_manifest.json").read_text().replace('"format":1', '"format":2')),
        "the manifest is in format 2, and this version of streamlet reads format 1"),
    "manifest copied from another checkpoint": (
        lambda chk: (chk / "_manifest.json").write_bytes(
            (chk.parent / "chk-000002" / "_manifest.json").read_bytes()),
        "the manifest describes checkpoint 2 of job 'clicks', not this one"),
}


@pytest.mark.parametrize("damage", sorted(DIRECTORY_DAMAGE))
def test_directory_latest_skips_a_damaged_checkpoint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    storage, chk = _dir_storage_with_three(tmp_path)
    breaker, reason = DIRECTORY_DAMAGE[damage]
    breaker(chk)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert storage.latest(JOB) == snapshot(2)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"checkpoint 3 of job 'clicks' at {chk} is damaged: ")
    assert record.getMessage().endswith("; using checkpoint 2 of job 'clicks' instead")
    assert re.search(reason, record.getMessage()), record.getMessage()
    with pytest.raises(CheckpointError, match=reason):
        storage.read(JOB, 3)
    storage.close()


def test_directory_latest_skips_several_and_logs_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage, chk = _dir_storage_with_three(tmp_path)
    _flip(chk / "state.bin", 10)
    (chk.parent / "chk-000002" / "_manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert storage.latest(JOB) == snapshot(1)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2
    assert "checkpoint 3 of job 'clicks'" in messages[0] and "checksum mismatch" in messages[0]
    assert "checkpoint 2 of job 'clicks'" in messages[1] and "no _manifest.json" in messages[1]
    assert all(m.endswith("using checkpoint 1 of job 'clicks' instead") for m in messages)
    storage.close()


def test_none_usable_returns_none_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage, chk = _dir_storage_with_three(tmp_path)
    for n in (1, 2, 3):
        _flip(chk.parent / f"chk-00000{n}" / "state.bin", 5)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert storage.latest(JOB) is None
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 4
    assert all("no earlier checkpoint is usable" in m for m in messages[:3])
    assert messages[3] == (f"no usable checkpoint of job 'clicks' in {tmp_path / 'ck'}: all 3 "
                           "are damaged; the job starts without state")
    storage.close()


def test_a_manifest_that_does_not_parse_is_not_listed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage, chk = _dir_storage_with_three(tmp_path)
    (chk / "_manifest.json").write_text("{")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert [i.checkpoint_id for i in storage.list(JOB)] == [1, 2]
    assert f"{chk} is not listed: the manifest is not valid JSON" in caplog.text
    storage.close()


# --- damage: the SQLite file --------------------------------------------------------------


def _sql(tmp_path: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(tmp_path / "ck.db")
    with conn:
        conn.execute(statement, args)
    conn.close()


def _blob(tmp_path: Path, group: int) -> bytes:
    conn = sqlite3.connect(tmp_path / "ck.db")
    [data] = conn.execute("SELECT data FROM blobs WHERE job = ? AND checkpoint_id = 3 AND "
                          "operator = 'totals' AND key_group = ?", (JOB, group)).fetchone()
    conn.close()
    return bytes(data)


def _set_blob(tmp_path: Path, group: int, data: bytes) -> None:
    _sql(tmp_path, "UPDATE blobs SET data = ? WHERE checkpoint_id = 3 AND operator = 'totals' "
                   "AND key_group = ?", data, group)


def _flip_blob(tmp_path: Path) -> None:
    data = bytearray(_blob(tmp_path, 31))
    data[len(data) // 2] ^= 0x80
    _set_blob(tmp_path, 31, bytes(data))


SQLITE_DAMAGE = {
    "flipped byte in a blob": (_flip_blob, "checksum mismatch"),
    "deleted checkpoint row": (
        lambda tmp: _sql(tmp, "DELETE FROM checkpoints WHERE id = 3"),
        r"its 7 blobs are in the file but its row in table 'checkpoints' is missing"),
    "truncated blob": (
        lambda tmp: _set_blob(tmp, 31, _blob(tmp, 31)[:-7]),
        r"the blob of operator 'totals' key group 31 is 102 bytes, the manifest says 109: "
        r"it was cut short"),
    "deleted blob": (
        lambda tmp: _sql(tmp, "DELETE FROM blobs WHERE checkpoint_id = 3 AND key_group = 62"),
        "the blob of operator 'totals' key group 62 is missing"),
    "deleted meta blob": (
        lambda tmp: _sql(tmp, "DELETE FROM blobs WHERE checkpoint_id = 3 AND key_group = -1 "
                              "AND operator = 'source'"),
        "the blob of operator 'source' meta is missing"),
    "changed time in the manifest": (
        lambda tmp: _sql(tmp, "UPDATE checkpoints SET manifest = replace(manifest, "
                              "'1704067203000', '1704067203001'), taken_at = 1704067203001 "
                              "WHERE id = 3"),
        "checksum mismatch"),
    "changed checksum": (
        lambda tmp: _sql(tmp, "UPDATE checkpoints SET checksum = 'sha256:00' WHERE id = 3"),
        "checksum mismatch"),
    "row that disagrees with its manifest": (
        lambda tmp: _sql(tmp, "UPDATE checkpoints SET kind = 'savepoint' WHERE id = 3"),
        "its row says kind 'savepoint'"),
    "blob the manifest does not list": (
        lambda tmp: _sql(tmp, "INSERT INTO blobs VALUES (?, 3, 'totals', 5, x'00')", JOB),
        "the file has blobs the manifest does not list: operator 'totals' key group 5"),
}


@pytest.mark.parametrize("damage", sorted(SQLITE_DAMAGE))
def test_sqlite_latest_skips_a_damaged_checkpoint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    with open_storage(str(tmp_path / "ck.db")) as storage:
        for n in (1, 2, 3):
            storage.write(snapshot(n))
    breaker, reason = SQLITE_DAMAGE[damage]
    breaker(tmp_path)
    with open_storage(str(tmp_path / "ck.db")) as storage, \
            caplog.at_level(logging.WARNING, logger=LOGGER):
        assert storage.latest(JOB) == snapshot(2)
        [record] = [r for r in caplog.records if r.name == LOGGER]
        message = record.getMessage()
        assert message.startswith(
            f"checkpoint 3 of job 'clicks' at {tmp_path / 'ck.db'} is damaged: ")
        assert message.endswith("; using checkpoint 2 of job 'clicks' instead")
        assert re.search(reason, message), message
        with pytest.raises(CheckpointError, match=reason):
            storage.read(JOB, 3)


def test_sqlite_file_that_is_not_a_checkpoint_file(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with open_storage(str(tmp_path / "junk.db")) as storage, \
            pytest.raises(CheckpointError, match=r"junk\.db cannot be used as a checkpoint file"):
        storage.list()
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE state_counts (k)")
    conn.close()
    with open_storage(str(tmp_path / "state.db")) as storage, \
            pytest.raises(CheckpointError, match=r"other tables \(state_counts\) and no "
                                                 "checkpoints: it may be a state backend's"):
        storage.latest(JOB)


# --- a write that dies half way -----------------------------------------------------------

DIE_MID_WRITE = '''
import os, sys
from streamlet.state import checkpoint_files
from streamlet.state.checkpoint_storage import OperatorState, Snapshot, open_storage

url, cls, step = sys.argv[1:]
original = getattr(getattr(checkpoint_files, cls), step)

def die(*args, **kwargs):
    os._exit(17)  # the process is gone: no cleanup, no rollback, no flush

setattr(getattr(checkpoint_files, cls), step, die)
storage = open_storage(url)
storage.write(Snapshot(2, "clicks", "checkpoint", 2, 128,
                       {"op": OperatorState(b"m", {g: os.urandom(50_000) for g in range(64)})}))
'''


@pytest.mark.parametrize(("name", "cls", "step"), [
    # the blobs are in the transaction, the row is not yet: the process dies
    ("ck.db", "SQLiteCheckpointStorage", "_insert_row"),
    # state.bin is written and fsynced, the manifest is not
    ("ck", "DirectoryCheckpointStorage", "_write_manifest"),
])
def test_a_write_killed_half_way_leaves_the_previous_checkpoint_latest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, cls: str,
        step: str) -> None:
    url = str(tmp_path / name)
    with open_storage(url) as storage:
        storage.write(snapshot(1))
    died = subprocess.run([sys.executable, "-c", DIE_MID_WRITE, url, cls, step],
                          capture_output=True, text=True, timeout=60, check=False)
    assert died.returncode == 17, died.stderr
    with open_storage(url) as storage, caplog.at_level(logging.WARNING, logger=LOGGER):
        assert storage.latest(JOB) == snapshot(1)
        assert [i.checkpoint_id for i in storage.list(JOB)] == [1]
        if cls == "DirectoryCheckpointStorage":
            assert (tmp_path / name / JOB / "chk-000002" / "state.bin").exists()
            assert "checkpoint 2 of job 'clicks'" in caplog.text
            assert "its write did not finish" in caplog.text
            assert "using checkpoint 1 of job 'clicks' instead" in caplog.text
        else:
            assert caplog.text == ""  # the transaction never committed: no trace at all
        caplog.clear()
        storage.write(snapshot(2))  # the same id again, as a restarted job would
        assert storage.latest(JOB) == snapshot(2)
        if cls == "DirectoryCheckpointStorage":
            assert "replacing the unfinished checkpoint 2 of job 'clicks'" in caplog.text


# --- open_storage -------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my dir").mkdir()
    forms: list[tuple[str, type[CheckpointStorage], Path]] = [
        ("sqlite:///rel/ck.db", SQLiteCheckpointStorage, tmp_path / "rel" / "ck.db"),
        (f"sqlite:///{tmp_path}/abs.db", SQLiteCheckpointStorage, tmp_path / "abs.db"),
        ("sqlite:///no-suffix", SQLiteCheckpointStorage, tmp_path / "no-suffix"),
        (f"file://{tmp_path}/dir", DirectoryCheckpointStorage, tmp_path / "dir"),
        (f"file://localhost{tmp_path}/dir", DirectoryCheckpointStorage, tmp_path / "dir"),
        ((tmp_path / "my dir").as_uri(), DirectoryCheckpointStorage, tmp_path / "my dir"),
        (f"file://{tmp_path}/named.db", DirectoryCheckpointStorage, tmp_path / "named.db"),
        ("plain.db", SQLiteCheckpointStorage, tmp_path / "plain.db"),
        (str(tmp_path / "plain.db"), SQLiteCheckpointStorage, tmp_path / "plain.db"),
        ("plain", DirectoryCheckpointStorage, tmp_path / "plain"),
        ("nested/dir/", DirectoryCheckpointStorage, tmp_path / "nested" / "dir"),
    ]
    for n, (url, cls, path) in enumerate(forms, 1):
        with open_storage(url) as storage:
            assert type(storage) is cls, url
            assert storage.path == path, url
            assert storage.url == url
            storage.write(snapshot(n))
            assert storage.latest(JOB) == snapshot(n), url
    assert (tmp_path / "rel" / "ck.db").is_file()
    assert (tmp_path / "my dir" / JOB / "chk-000006").is_dir()


@pytest.mark.parametrize(("url", "message"), [
    ("", "is empty"),
    ("sqlite://", "a sqlite URL is sqlite:///path with no options"),
    ("sqlite:///", "a sqlite URL is sqlite:///path with no options"),
    ("sqlite:ck.db", "a sqlite URL is sqlite:///path with no options"),
    ("sqlite:///ck.db?mode=ro", "a sqlite URL is sqlite:///path with no options"),
    ("file://server/share/ck", "a file URL is file:///absolute/dir"),
    ("file:relative", "a file URL is file:///absolute/dir"),
    ("file:///ck?x=1", "a file URL is file:///absolute/dir"),
    ("s3://bucket/ck", "scheme 's3' is not supported"),
    ("postgresql://localhost/db", "scheme 'postgresql' is not supported"),
])
def test_bad_urls_say_which_forms_work(url: str, message: str) -> None:
    with pytest.raises(StreamletConfigError, match=message) as caught:
        open_storage(url)
    assert "use sqlite:///relative/path.db or sqlite:////absolute/path.db" in str(caught.value)
    assert "file:///absolute/dir, or a plain path" in str(caught.value)


def test_a_path_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StreamletConfigError, match="is a directory, not a SQLite file"):
        open_storage(str(tmp_path / "dir.db"))
    with pytest.raises(StreamletConfigError, match="is a file, not a directory"):
        open_storage(str(tmp_path / "file"))
