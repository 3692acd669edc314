"""``streamlet checkpoints list|show`` as a user runs it: a real subprocess on real storages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamlet.state.checkpoint_storage import OperatorState, Snapshot, open_storage

ROOT = Path(__file__).resolve().parents[1]
STREAMLET = [sys.executable, "-m", "streamlet.cli"]
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STREAMLET, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _snapshot(checkpoint_id: int, job: str = "clicks", kind: str = "checkpoint") -> Snapshot:
    return Snapshot(checkpoint_id, job, kind, T0 + checkpoint_id * 60_000 + 5, 128, {
        "source": OperatorState(b"offset=42", {}),
        "totals": OperatorState(b"", {g: b"x" * 1000 for g in range(checkpoint_id * 3)}),
    })


@pytest.fixture(params=["ck.db", "ck"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite storage and a directory storage, each holding the same checkpoints."""
    location = str(tmp_path / request.param)
    with open_storage(location) as storage:
        storage.write(_snapshot(1))
        storage.write(_snapshot(2, kind="savepoint"))
        storage.write(_snapshot(10))
        storage.write(_snapshot(2, job="audit"))
    return location


def test_list_prints_a_line_per_checkpoint(url: str) -> None:
    done = _run("checkpoints", "list", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "audit    2  checkpoint  2024-01-01T00:02:00.005Z   6009 bytes",
        "clicks   1  checkpoint  2024-01-01T00:01:00.005Z   3009 bytes",
        "clicks   2  savepoint   2024-01-01T00:02:00.005Z   6009 bytes",
        "clicks  10  checkpoint  2024-01-01T00:10:00.005Z  30009 bytes",
    ]
    only = _run("checkpoints", "list", url, "--job", "audit")
    assert only.stdout.splitlines() == [
        "audit  2  checkpoint  2024-01-01T00:02:00.005Z  6009 bytes"]


def test_show_prints_the_manifest_per_operator(url: str) -> None:
    done = _run("checkpoints", "show", url, "10")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "checkpoint 10 of job 'clicks'"
    assert lines[1] == "taken at  2024-01-01T00:10:00.005Z"
    assert lines[2].startswith("location  ") and str(Path(url)) in lines[2]
    assert lines[3:] == [
        "size      30009 bytes",
        "max parallelism 128; checksum verified",
        "operators (2):",
        "  'source'  9 bytes  0 key groups  (meta 9 bytes)",
        "  'totals'  30000 bytes  30 key groups  (meta 0 bytes)",
    ]


def test_show_needs_the_job_when_two_jobs_share_an_id(url: str) -> None:
    both = _run("checkpoints", "show", url, "2")
    assert both.returncode == 2
    assert "checkpoint 2 exists for jobs 'audit', 'clicks'" in both.stderr
    assert "pass --job NAME" in both.stderr
    one = _run("checkpoints", "show", url, "2", "--job", "clicks")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("savepoint 2 of job 'clicks'\n")


def test_unknown_ids_and_bad_storages_exit_2(url: str, tmp_path: Path) -> None:
    unknown = _run("checkpoints", "show", url, "7")
    assert unknown.returncode == 2
    assert "no checkpoint 7 in" in unknown.stderr
    assert "its ids are 1, 2, 10" in unknown.stderr
    of_job = _run("checkpoints", "show", url, "1", "--job", "audit")
    assert of_job.returncode == 2
    assert "no checkpoint 1 of job 'audit'" in of_job.stderr
    not_int = _run("checkpoints", "show", url, "latest")
    assert not_int.returncode == 2
    assert "invalid int value: 'latest'" in not_int.stderr
    bad_url = _run("checkpoints", "list", "s3://bucket/ck")
    assert bad_url.returncode == 2
    assert "scheme 's3' is not supported; use sqlite:///" in bad_url.stderr
    for missing in ("absent.db", "absent"):
        nothing = _run("checkpoints", "list", str(tmp_path / missing))
        assert nothing.returncode == 2
        assert f"no checkpoint storage at {tmp_path / missing}" in nothing.stderr
        assert not (tmp_path / missing).exists()  # looking created nothing
        assert "not the pipeline" not in nothing.stderr
    a_pipeline = _run("checkpoints", "list", "examples/clicks.py:pipeline")
    assert a_pipeline.returncode == 2
    assert "takes the pipeline's checkpoint storage" in a_pipeline.stderr
    for done in (unknown, of_job, bad_url):
        assert "Traceback" not in done.stderr


def test_an_empty_storage_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _run("checkpoints", "list", f"file://{tmp_path}/empty")
    assert done.returncode == 0
    assert done.stdout == ""
    assert f"no checkpoints in file://{tmp_path}/empty" in done.stderr


def test_show_of_a_damaged_checkpoint_says_why_and_exits_1(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "ck")) as storage:
        info = storage.write(_snapshot(3))
    data = Path(info.location) / "state.bin"
    data.write_bytes(data.read_bytes()[:-1] + b"!")
    done = _run("checkpoints", "show", str(tmp_path / "ck"), "3")
    assert done.returncode == 1
    assert done.stdout.startswith("checkpoint 3 of job 'clicks'\n")
    assert "  operator 'totals': 9000 bytes" in done.stdout
    assert "checkpoint 3 of job 'clicks' at" in done.stderr
    assert "is damaged: checksum mismatch" in done.stderr
    assert "Traceback" not in done.stderr
