"""Pipelines over worker processes: results, errors, stopping, state backends.

Every run here starts real processes (spawn), talking over real Unix
sockets. The crash and rescale checks are in test_workers_crash.py and
test_workers_rescale.py; the property runs in property_tests/test_workers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import streamlet as sl
from streamlet.cluster.coordinator import _by_value
from streamlet.cluster.workers import WorkerFailedError, WorkerLostError
from streamlet.core.batch import Batch
from streamlet.core.source import Source, SourceReader
from streamlet.testing import ManualClock

EVENTS = [{"user": i % 113, "ts": 1_000 + 7 * i, "amount": i % 10} for i in range(30_000)]


def windowed(workers: int, *, partitions: int = 0, **settings: Any) -> tuple[sl.Pipeline, Any]:
    """Sum of amounts per user and 1-s tumbling window, from a list or partitions."""
    pipeline = sl.Pipeline("windowed", workers=workers, batch_size=256, **settings)
    source = (pipeline.from_partitions([EVENTS[p::partitions] for p in range(partitions)])
              if partitions else pipeline.from_iterable(EVENTS))
    out = (source
           .assign_timestamps(lambda e: e["ts"],
                              sl.WatermarkStrategy.bounded_out_of_orderness(timedelta(0)))
           .key_by(lambda e: e["user"])
           .window(sl.windows.Tumbling(timedelta(seconds=1)))
           .aggregate(sl.agg.sum(lambda e: e["amount"]))
           .map(lambda r: (r.key, r.window.start, r.value))
           .collect())
    return pipeline, out


def committed(directory: Path) -> list[Any]:
    return [json.loads(line) for f in sorted(directory.glob("part-*"))
            for line in f.read_text().splitlines()]


def oracle() -> Counter[tuple[int, int, int]]:
    sums: Counter[tuple[int, int]] = Counter()
    for e in EVENTS:
        sums[(e["user"], e["ts"] // 1000 * 1000)] += e["amount"]
    return Counter((user, start, total) for (user, start), total in sums.items())


@pytest.mark.parametrize("partitions", [0, 4])
def test_two_and_three_workers_compute_what_one_does(partitions: int) -> None:
    expected = oracle()
    for workers in (1, 2, 3):
        pipeline, out = windowed(workers, partitions=partitions)
        result = pipeline.run()
        assert Counter(out) == expected, f"workers={workers}"
        if workers > 1:  # every worker took part: each has its shuffle channels
            names = " ".join(result.channels)
            assert all(f"[worker {i}]" in names for i in range(workers))


def test_a_keyed_running_reduce_keeps_each_keys_order_across_workers() -> None:
    """A running reduce emits per record: with one source (read by worker 0, as
    Flink reads a collection), each key's sequence is the same on any number
    of workers; only the interleaving across keys differs."""
    def run(workers: int) -> dict[int, list[int]]:
        pipeline = sl.Pipeline("reduce", workers=workers, batch_size=64)
        out = (pipeline.from_iterable(EVENTS[:5000])
               .map(lambda e: (e["user"], e["amount"]))
               .key_by(lambda t: t[0])
               .reduce(lambda a, b: (a[0], a[1] + b[1]))
               .collect())
        pipeline.run()
        per_key: dict[int, list[int]] = {}
        for user, total in out:
            per_key.setdefault(user, []).append(total)
        return per_key

    assert run(3) == run(1)


def test_two_input_operators_and_unions_run_on_workers() -> None:
    def run(workers: int) -> Counter[Any]:
        pipeline = sl.Pipeline("joined", workers=workers)
        strategy = sl.WatermarkStrategy.bounded_out_of_orderness(timedelta(0))
        left = pipeline.from_iterable([(k % 50, t) for t, k in enumerate(range(2000))],
                                      name="left").assign_timestamps(lambda e: e[1], strategy)
        right = pipeline.from_partitions([[(k, t * 10) for t in range(200)] for k in range(50)],
                                         name="right").assign_timestamps(lambda e: e[1],
                                                                         strategy)
        joined = (left.key_by(lambda e: e[0])
                  .interval_join(right.key_by(lambda e: e[0]), -5, 5)
                  .process(lambda a, b: (a[0], a[1], b[1])))
        both = joined.union(left.map(lambda e: ("left", e[0], e[1])))
        out = both.collect()
        pipeline.run()
        return Counter(out)

    one = run(1)
    assert sum(one.values()) > 2000  # the join found pairs
    assert run(3) == one


def test_state_in_sqlite_files_gets_a_file_per_worker(tmp_path: Path) -> None:
    pipeline, out = windowed(2, partitions=4, state_backend=sl.SQLiteState(tmp_path / "state"))
    pipeline.run()
    assert Counter(out) == oracle()
    files = sorted(p.name for p in (tmp_path / "state").rglob("*.sqlite"))
    assert len(files) == 2 and files[0] != files[1]


def test_checkpoints_of_three_workers_restore_onto_two(tmp_path: Path) -> None:
    """A bounded run's final checkpoint holds each worker's part; a second run
    with another number of workers resumes from it and replays nothing."""
    storage = f"sqlite:///{tmp_path / 'cp.db'}"
    out_dir = tmp_path / "out"

    def build(workers: int) -> sl.Pipeline:
        pipeline = sl.Pipeline("files", workers=workers, checkpointing=sl.Checkpointing(
            interval=timedelta(milliseconds=20), storage=storage))
        (pipeline.from_partitions([EVENTS[p::3] for p in range(3)])
         .key_by(lambda e: e["user"])
         .reduce(lambda a, b: {**a, "amount": a["amount"] + b["amount"]})
         .map(lambda e: [e["user"], e["amount"]])
         .to_files(out_dir))
        return pipeline

    first = build(3).run()
    assert first.checkpoints and first.restored_from is None
    rows = committed(out_dir)
    assert len(rows) == len(EVENTS)
    assert {name.rsplit("-", 1)[0] for name in (f.name for f in out_dir.glob("part-*"))} == \
        {"part-0", "part-1", "part-2"}  # each worker commits files of its own
    final = {}
    for user, total in rows:
        final[user] = max(final.get(user, 0), total)
    assert final == {u: sum(e["amount"] for e in EVENTS if e["user"] == u) for u in final}

    again = build(2).run()
    assert again.restored_from == first.checkpoints[-1].checkpoint_id
    assert len(committed(out_dir)) == len(EVENTS)


class Endless(Source):
    """Counts up forever; writes ``marker`` once it has read ``mark`` records
    (in this run)."""

    def __init__(self, marker: Path, mark: int) -> None:
        self.marker = marker
        self.mark = mark

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return EndlessReader(self, name)


class EndlessReader(SourceReader):
    def __init__(self, source: Endless, name: str) -> None:
        self.source = source
        self.name = name
        self.read = self.began = 0

    async def next_batch(self) -> Batch:
        start = self.read
        self.read += 100
        if start - self.began < self.source.mark <= self.read - self.began:
            self.source.marker.write_text("read")
        await asyncio.sleep(0)
        return Batch([{"user": i % 7, "n": 1} for i in range(start, self.read)])

    def position(self) -> int:
        return self.read

    def seek(self, position: Any) -> None:
        self.read = self.began = position


async def test_stop_takes_a_final_checkpoint_on_every_worker(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'cp.db'}"
    marker = tmp_path / "marker"

    def build() -> tuple[sl.Pipeline, Any]:
        pipeline = sl.Pipeline("stoppable", workers=2, checkpointing=sl.Checkpointing(
            interval=timedelta(seconds=60), storage=storage))
        counts = (pipeline.from_source(Endless(marker, 3000), name="endless")
                  .key_by(lambda e: e["user"])
                  .reduce(lambda a, b: {"user": a["user"], "n": a["n"] + b["n"]})
                  .collect())
        return pipeline, counts

    pipeline, counts = build()
    running = asyncio.ensure_future(pipeline.run_async())
    while not marker.exists():  # waits on a condition, not for a time
        assert not running.done(), running.exception()
        await asyncio.sleep(0.01)
    assert pipeline.status()["state"] == "running"
    while min(w["heartbeats"] for w in pipeline.status()["workers"]) < 1:
        assert not running.done(), running.exception()
        await asyncio.sleep(0.01)  # until both have reported once
    workers = pipeline.status()["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    assert all(w["records"] > 0 for w in workers)  # both took records from the shuffle
    pipeline.stop()
    result = await asyncio.wait_for(running, 60)
    assert [c.kind for c in result.checkpoints] == ["checkpoint"]  # the final one
    last: dict[int, int] = {}
    for c in counts:  # a running count per key: its last value is its total
        last[c["user"]] = max(last.get(c["user"], 0), c["n"])
    read = sum(last.values())
    assert read >= 3000 and read % 100 == 0  # whole batches, from worker 0's source

    marker.unlink()
    pipeline, counts = build()
    running = asyncio.ensure_future(pipeline.run_async())
    while not marker.exists():
        assert not running.done(), running.exception()
        await asyncio.sleep(0.01)
    pipeline.stop()
    again = await asyncio.wait_for(running, 60)
    assert again.restored_from == result.checkpoints[-1].checkpoint_id
    firsts = {}
    for c in counts:  # each key's count goes on from where the first run stopped
        firsts.setdefault(c["user"], c["n"])
    assert sum(firsts.values()) == read + 7


def test_a_failing_function_fails_the_job_naming_the_worker_and_operator() -> None:
    pipeline = sl.Pipeline("failing", workers=2)

    def explode(e: dict[str, int]) -> dict[str, int]:
        if e["user"] == 5 and e["amount"] == 5:
            raise ValueError("bad amount")
        return e

    (pipeline.from_iterable(EVENTS[:2000]).key_by(lambda e: e["user"])
     .map(explode, name="explode").collect())
    with pytest.raises(WorkerFailedError) as caught:
        pipeline.run()
    text = str(caught.value)
    assert "while running its part of the job" in text
    assert "'explode'" in text and "bad amount" in text
    assert "Traceback in the worker" in text
    # the function travelled by value, and still names its file and shows its line
    assert f'File "{__file__}", line' in caught.value.worker_traceback
    assert 'raise ValueError("bad amount")' in caught.value.worker_traceback


async def test_a_worker_that_dies_before_sending_its_results_fails_the_job() -> None:
    """Killed after it was told to finish: its exit is no longer a loss by itself,
    but its results will never come, and the job must not wait for them forever."""

    class DiesWhenPickled:
        # a worker pickles what it collected only to send it back, at the very end
        def __reduce__(self) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("SIGKILL returned")

    pipeline = sl.Pipeline("dies-at-the-end", workers=2)
    pipeline.from_partitions([[1], [2]]).map(lambda _: DiesWhenPickled()).collect()
    with pytest.raises(WorkerLostError, match=r"worker \d \(pid \d+\) was killed by SIGKILL "
                                              "after it was told to finish, before it sent "
                                              "its results"):
        await asyncio.wait_for(pipeline.run_async(), 60)


def test_a_manual_clock_cannot_drive_worker_processes() -> None:
    pipeline = sl.Pipeline("clocked", workers=2, clock=ManualClock())
    pipeline.from_iterable([1, 2]).collect()
    with pytest.raises(sl.StreamletConfigError, match="runs on the system clock"):
        pipeline.run()


def test_a_pipeline_that_cannot_travel_says_how_to_fix_it() -> None:
    pipeline = sl.Pipeline("untravelled", workers=2)
    rows = (i for i in range(10))  # a generator: neither importable nor picklable
    pipeline.from_iterable(rows).collect()
    with pytest.raises(sl.StreamletConfigError) as caught:
        pipeline.run()
    text = str(caught.value)
    assert "cannot travel to its 2 worker processes" in text
    assert "generator" in text and "module-level name" in text


def test_functions_sent_by_value_keep_their_code_whole() -> None:
    def seven() -> int:
        return 7

    back = pickle.loads(_by_value(seven))
    assert back() == 7 and back.__code__.co_filename == __file__
    # code with a constant marshal cannot write travels the way cloudpickle sends it
    odd = types.FunctionType(seven.__code__.replace(
        co_consts=tuple(Fraction(7) if c == 7 else c for c in seven.__code__.co_consts)), {})
    assert pickle.loads(_by_value(odd))() == Fraction(7)


class Landing(list[Any]):
    """A partition that leaves a file named after the process it is unpickled in."""

    def __init__(self, items: Any, name: str, directory: str) -> None:
        super().__init__(items)
        self.name = name
        self.directory = directory

    def __reduce__(self) -> Any:
        return _landed, (list(self), self.name, self.directory)


def _landed(items: list[Any], name: str, directory: str) -> Landing:
    Path(directory, f"{name}-{os.getpid()}").touch()
    return Landing(items, name, directory)


@pytest.mark.parametrize("workers", [2, 3])
def test_each_worker_is_sent_only_the_partitions_it_reads(tmp_path: Path, workers: int) -> None:
    pipeline = sl.Pipeline("landing", workers=workers)
    parts = [Landing(range(p * 100, p * 100 + 50), f"p{p}", str(tmp_path)) for p in range(5)]
    out = pipeline.from_partitions(parts).map(lambda x: x * 2).collect()
    pipeline.run()
    assert sorted(out) == [2 * x for p in range(5) for x in range(p * 100, p * 100 + 50)]
    landed = {}
    for marker in tmp_path.iterdir():
        name, pid = marker.name.split("-")
        assert name not in landed, f"{name} was unpickled in two processes"
        landed[name] = int(pid)
    assert sorted(landed) == [f"p{p}" for p in range(5)]  # each in one process only
    assert os.getpid() not in landed.values()
    # partition p went to worker p % workers, and to no other
    by_worker = {p % workers: landed[f"p{p}"] for p in range(5)}
    for p in range(5):
        assert landed[f"p{p}"] == by_worker[p % workers]
    assert len(set(by_worker.values())) == workers


def test_streamlet_run_workers_runs_a_module_pipeline_on_workers(tmp_path: Path) -> None:
    module = tmp_path / "byworkers.py"
    module.write_text(
        "import streamlet as sl, json, os, sys\n"
        "pipeline = sl.Pipeline('byworkers')\n"
        "(pipeline.from_partitions([list(range(p, 1000, 4)) for p in range(4)])\n"
        " .key_by(lambda n: n % 10)\n"
        " .map(lambda n: [n % 10, n, os.getpid()])\n"
        f" .to_files({str(tmp_path / 'out')!r}))\n")
    done = subprocess.run([sys.executable, "-m", "streamlet.cli", "run", "--workers", "2",
                           f"{module}:pipeline"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    rows = committed(tmp_path / "out")
    assert sorted(r[1] for r in rows) == list(range(1000))
    assert len({r[2] for r in rows}) == 2  # written by two processes


def test_a_mistake_in_the_pipeline_found_by_a_worker_is_not_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    pipeline = sl.Pipeline("mistaken", workers=2, restart_strategy=sl.RestartStrategy.fixed_delay(
        attempts=3, delay=timedelta(0)))

    async def lookup(e: dict[str, int]) -> dict[str, int]:
        return e

    (pipeline.from_iterable(EVENTS[:100]).key_by(lambda e: e["user"])
     .map(lambda e: lookup(e), name="forgot-async").collect())  # returns a coroutine
    with pytest.raises(WorkerFailedError, match="returned an awaitable") as caught:
        pipeline.run()
    assert caught.value.config_error
    assert not [r for r in caplog.records if "restart" in r.getMessage()]


@contextmanager
def streamlet_run(cwd: Path, *args: str, env: dict[str, str] | None = None
                  ) -> Iterator[subprocess.Popen[str]]:
    """``streamlet run ARGS`` in ``cwd``, its log on a pipe; killed if still running."""
    child = subprocess.Popen([sys.executable, "-m", "streamlet.cli", "run", *args], cwd=cwd,
                             env=env, stderr=subprocess.PIPE, text=True)
    try:
        yield child
    finally:
        child.kill()
        child.wait()
        if child.stderr is not None:
            child.stderr.close()


UNBOUNDED_JOB = '''
import itertools
import streamlet as sl

def numbers():
    yield from itertools.count()

pipeline = sl.Pipeline("unbounded", workers=2)
pipeline.from_partitions([numbers(), numbers()]).key_by(lambda n: n % 7).collect()
if __name__ == "__main__":
    pipeline.run()
'''


def test_workers_of_a_killed_coordinator_exit_and_remove_its_sockets(tmp_path: Path) -> None:
    """A coordinator killed with SIGKILL cannot clean up: its workers see their
    channel close, stop, and remove the socket directory themselves."""
    (tmp_path / "job.py").write_text(UNBOUNDED_JOB)
    temp = tmp_path / "tmp"
    temp.mkdir()
    with streamlet_run(tmp_path, "job.py:pipeline",
                       env={**os.environ, "TMPDIR": str(temp)}) as child:
        assert child.stderr is not None
        pids: list[int] = []
        for line in child.stderr:  # waits on the coordinator's log line, not a time
            if "runs on 2 workers (pids " in line:
                pids = [int(p) for p in line.split("(pids ")[1].split(")")[0].split(", ")]
                break
        assert len(pids) == 2 and list(temp.iterdir())  # the sockets' directory
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        for pid in pids:  # both workers exit by themselves
            while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
                time.sleep(0.01)  # polls a condition
        assert list(temp.iterdir()) == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_a_script_that_runs_its_pipeline_unguarded_is_told_to_guard_it(tmp_path: Path) -> None:
    (tmp_path / "unguarded.py").write_text(UNBOUNDED_JOB.replace(
        'if __name__ == "__main__":\n    pipeline.run()', "pipeline.run()"))
    done = subprocess.run([sys.executable, "unguarded.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "was run while a worker process imported the script" in done.stderr
    assert "if __name__ == '__main__'" in done.stderr


SIDECAR_JOB = '''
import itertools
import streamlet as sl

def numbers(start):
    yield from itertools.count(start, 2)

pipeline = sl.Pipeline("sidecar", checkpointing=sl.Checkpointing(
    interval=200, storage="sqlite:///cp.db"))
(pipeline.from_partitions([numbers(0), numbers(1)])
 .map(lambda n: (n % 5, 1))
 .key_by(lambda pair: pair[0])
 .reduce(lambda a, b: (a[0], a[1] + b[1]))
 .map(list)
 .to_files("out"))
'''


def test_a_parallel_sidecar_takes_a_savepoint_stops_on_sigterm_and_resumes_on_more_workers(
        tmp_path: Path) -> None:
    """The operator's view: streamlet run --workers 2, streamlet savepoint, SIGTERM
    (exit 0 after a final checkpoint), then streamlet run --workers 3, resuming
    from that final checkpoint. Each key's committed rows are its running count,
    1, 2, 3, ... with no gap and no repeat: every record counted exactly once,
    its state carried across the stop and onto three workers."""
    (tmp_path / "job.py").write_text(SIDECAR_JOB)

    seen: list[str] = []

    def until(child: subprocess.Popen[str], text: str) -> None:
        assert child.stderr is not None
        for line in child.stderr:  # the job's log lines: no sleeping
            seen.append(line)
            if text in line:
                return
        raise AssertionError(f"the job ended before logging {text!r}")

    with streamlet_run(tmp_path, "--workers", "2", "job.py:pipeline") as first:
        until(first, "runs on 2 workers")
        until(first, "complete")
        saved = subprocess.run([sys.executable, "-m", "streamlet.cli", "savepoint",
                                "job.py:pipeline"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60, check=False)
        assert saved.returncode == 0, saved.stderr
        savepoint = int(saved.stdout)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    rows = committed(tmp_path / "out")
    assert rows and {name[:7] for name in os.listdir(tmp_path / "out")
                     if name.startswith("part-")} == {"part-0-", "part-1-"}

    with streamlet_run(tmp_path, "--workers", "3", "job.py:pipeline") as second:
        until(second, "restores checkpoint")  # the final one of the first run
        until(second, "runs on 3 workers")
        until(second, "complete")  # a checkpoint of this run: its output is committed
        # the workers log as the coordinator does (--log-level), each line marked
        assert {i for i in range(3) for line in seen
                if f"INFO worker {i} streamlet.checkpoints: job 'sidecar' restored" in line} \
            == {0, 1, 2}
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    more = committed(tmp_path / "out")
    assert len(more) > len(rows) and savepoint >= 1
    per_key: dict[int, list[int]] = {}
    for key, count in more:
        per_key.setdefault(key, []).append(count)
    assert sorted(per_key) == [0, 1, 2, 3, 4]
    for counts in per_key.values():
        assert sorted(counts) == list(range(1, len(counts) + 1))
