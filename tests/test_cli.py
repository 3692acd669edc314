"""``streamlet run`` as a user runs it: a real subprocess, real signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STREAMLET = [sys.executable, "-m", "streamlet.cli"]

UNBOUNDED_JOB = '''
import asyncio, sys
import streamlet as sl

async def forever():
    try:
        i = 0
        while True:
            yield i
            i += 1
            if i % 100 == 0:
                await asyncio.sleep(0.001)
    finally:
        print("source closed", flush=True)

seen = 0

def announce(value):
    global seen
    seen += 1
    if seen == 1000:
        print("running", flush=True)

pipeline = sl.Pipeline("forever")
pipeline.from_async_iterable(forever()).key_by(lambda v: v % 10).sink(announce)
'''


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STREAMLET, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_run_executes_the_example_job() -> None:
    done = _run("run", "examples/clicks.py:pipeline")
    assert done.returncode == 0, done.stderr
    assert "job 'clicks' finished" in done.stderr


def test_run_a_module_attribute_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "myjob.py").write_text(
        "import streamlet as sl\n"
        "def build():\n"
        "    p = sl.Pipeline('mine')\n"
        "    p.from_iterable(range(3)).map(lambda x: x * 2).sink(print)\n"
        "    return p\n")
    done = _run("run", "myjob:build", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "2", "4"]


def test_a_failing_job_exits_1_with_the_operator_named(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import streamlet as sl\n"
        "pipeline = sl.Pipeline('bad')\n"
        "pipeline.from_iterable([1, 0]).map(lambda x: 1 // x, name='invert').sink(print)\n")
    done = _run("run", "bad.py:pipeline", cwd=tmp_path)
    assert done.returncode == 1
    assert "UserFunctionError: operator 'invert': ZeroDivisionError" in done.stderr
    assert "record 0" in done.stderr


def test_bad_targets_say_what_is_wrong(tmp_path: Path) -> None:
    assert "expected module:attribute" in _run("run", "nocolon").stderr
    assert "add the name it has there after a colon, e.g. examples/clicks.py:pipeline" in _run(
        "run", "examples/clicks.py").stderr
    assert "has no attribute 'nope'" in _run("run", "examples/clicks.py:nope").stderr
    (tmp_path / "notpipe.py").write_text("x = 3\n")
    assert "is a int, not a streamlet Pipeline" in _run(
        "run", "notpipe.py:x", cwd=tmp_path).stderr


def test_plan_prints_tasks() -> None:
    done = _run("plan", "examples/clicks.py:pipeline")
    assert done.returncode == 0
    assert "task totals: reduce:totals -> sink:latest-totals  <= by-user[hash]" in done.stdout


def test_ctrl_c_stops_an_unbounded_job_cleanly(tmp_path: Path) -> None:
    (tmp_path / "forever.py").write_text(UNBOUNDED_JOB)
    proc = subprocess.Popen([*STREAMLET, "run", "forever.py:pipeline"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"  # the job is processing
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "source closed" in out
    assert "cancelled (Ctrl-C)" in err
    assert "Traceback" not in err


SERVED_JOB = '''
import asyncio
import sys

import streamlet as sl
from streamlet.core.batch import Batch
from streamlet.core.source import Source, SourceReader


class Counter(SourceReader):
    """0, 1, 2, ... forever, a batch every few ms; resumable at any number."""

    def __init__(self, name):
        self.name = name
        self.next = 0

    async def next_batch(self):
        await asyncio.sleep(0.005)  # pacing the job, not a test
        batch = Batch(list(range(self.next, self.next + 10)))
        self.next += 10
        return batch

    def position(self):
        return self.next

    def seek(self, position):
        self.next = position


class Counting(Source):
    def create_reader(self, name, batch_size):
        return Counter(name)


pipeline = sl.Pipeline("served", checkpointing=sl.Checkpointing(
    interval=3_600_000, storage="sqlite:///checkpoints.db"))
seen = [0]


def report(value):
    seen[0] += 1
    if seen[0] == 50:
        print("running", flush=True)


(pipeline.from_source(Counting(), name="numbers")
 .key_by(lambda n: n % 3).reduce(lambda a, b: a + b, name="sums").sink(report))
'''


def test_savepoint_of_a_running_job_from_another_process(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(SERVED_JOB)
    proc = subprocess.Popen([*STREAMLET, "run", "served.py:pipeline"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        taken = _run("savepoint", "served.py:pipeline", cwd=tmp_path)
        assert taken.returncode == 0, taken.stderr
        savepoint = int(taken.stdout)
        listed = _run("checkpoints", "list", "sqlite:///checkpoints.db", cwd=tmp_path)
        assert "served" in listed.stdout and "savepoint" in listed.stdout
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert savepoint >= 1
    missing = _run("savepoint", "served.py:pipeline", cwd=tmp_path)  # the job is gone
    assert missing.returncode == 1
    assert "no running job answers" in missing.stderr


def test_run_says_when_a_job_resumed_from_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "totals.py").write_text(
        "import streamlet as sl\n"
        "pipeline = sl.Pipeline('totals', checkpointing=sl.Checkpointing(\n"
        "    storage='sqlite:///state/totals.db'))\n"
        "pipeline.from_iterable([1, 2, 3]).to_files('out')\n")
    first = _run("run", "totals.py:pipeline", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "job 'totals' finished; last checkpoint 1" in first.stderr
    again = _run("run", "totals.py:pipeline", cwd=tmp_path)
    assert "job 'totals' finished (resumed from checkpoint 1); last checkpoint 2" in (
        again.stderr)


def test_sigterm_stops_a_checkpointed_job_with_a_final_checkpoint_and_it_resumes(
        tmp_path: Path) -> None:
    # The sidecar's life: SIGTERM stops the sources, the job finishes what is in
    # flight, takes a final checkpoint and exits 0; started again it resumes
    # from there (and Ctrl-C does the same).
    (tmp_path / "served.py").write_text(SERVED_JOB)

    def serve(stop: signal.Signals) -> tuple[int, str]:
        proc = subprocess.Popen([*STREAMLET, "run", "served.py:pipeline"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "running"
            proc.send_signal(stop)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, err

    code, err = serve(signal.SIGTERM)
    assert code == 0, err
    assert "job 'served' stopped on SIGTERM; last checkpoint 1" in err
    code, err = serve(signal.SIGINT)
    assert code == 0, err
    assert "job 'served' stopped on SIGINT (resumed from checkpoint 1); last checkpoint 2" in err


def test_the_cli_log_holds_back_a_client_library_repeating_itself() -> None:
    from streamlet.cli import _Repeats  # noqa: PLC0415  # the filter streamlet run installs

    def record(name: str, at: float) -> logging.LogRecord:
        line = logging.LogRecord(name, logging.ERROR, "x.py", 1, "Unable to update metadata",
                                 None, None)
        line.created = at
        return line

    repeats = _Repeats()
    shown = [repeats.filter(record("aiokafka.cluster", at)) for at in (0.0, 0.1, 5.0, 29.0)]
    assert shown == [True, False, False, False]
    again = record("aiokafka.cluster", 31.0)
    assert repeats.filter(again)
    assert again.getMessage() == ("Unable to update metadata "
                                  "(3 more like this in the last 30 s)")
    assert all(repeats.filter(record("streamlet.kafka", at)) for at in (0.0, 0.1))
