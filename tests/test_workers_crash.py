"""The worker crash test: a parallel job whose worker processes are killed
with SIGKILL over and over restarts by itself and still commits its output
exactly once.

``tests/workers_crash_job.py`` (a keyed event-time window count over
``EVENTS`` events in four ``from_partitions`` partitions, two worker
processes, written by ``to_files``, a checkpoint every few ms, a fixed-delay
restart strategy) runs in a subprocess: the coordinator. The test never
kills the coordinator. When an attempt starts, the coordinator logs its
workers' pids; the test then SIGKILLs one of them, chosen by a seeded
``random.Random``, at a moment chosen by the same generator: right after the
coordinator logs "writing checkpoint N" (the worker dies while its
checkpoint is written, which the coordinator may still complete), right
after "checkpoint N complete" (durable, but the sinks have not yet been told
to commit), or a random number of milliseconds after the attempt started.
The coordinator must notice the lost worker, stop the other one, and start
two new workers from its latest complete checkpoint: ``KILLS`` times, after
which the job runs to its end. Kills are timed on the log lines and on
seeded deadlines, never on sleeps. Until then the job holds back its
partitions' last batch (``--hold``): however fast it gets, no attempt can
finish before the kill meant for it.

Then: every kill caused exactly one restart (its pid is in the restart
warning), the restored checkpoints and the source positions never go
backwards, and the committed part files hold exactly the count of every
user's window, as computed by brute force from the events: nothing lost,
nothing duplicated, nothing hidden left behind.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import workers_crash_job as job
from killing import CLOCK, Watch, run_attempt

from streamlet.state.checkpoint_storage import open_storage
from streamlet.state.snapshots import loads

JOB_SCRIPT = Path(__file__).with_name("workers_crash_job.py")
EVENTS = 1_000_000
SEED = 20240611
INTERVAL_MS = 50
WORKERS = 2
KILLS = 12
"""Kills per run; the issue asks for at least 10."""
MIN_KILLS = 10

STARTED = re.compile(r"^INFO job '.*' runs on (\d+) workers \(pids ([\d, ]+)\)")
WRITING = re.compile(r"^DEBUG writing checkpoint (\d+) of job")
COMPLETE = re.compile(r"^INFO checkpoint (\d+) of job .* complete")
RESTORES = re.compile(r"^INFO job '.*' restores checkpoint (\d+) onto (\d+) workers")
RESTART = re.compile(r"^WARNING job '.*' failed \(WorkerLostError: worker (\d+) \(pid (\d+)\) "
                     r"was killed by SIGKILL while the job ran\); restart (\d+) in")


@dataclass(frozen=True)
class Trigger:
    """When to kill a worker of one attempt: right after the attempt's
    ``n``-th "writing checkpoint" line (``"write"``) or "complete" line
    (``"complete"``), or ``delay_ms`` after it started (``"delay"``)."""

    kind: str
    n: int = 0
    delay_ms: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}@{self.n}" if self.kind != "delay" else "delay"


@dataclass
class Kill:
    trigger: Trigger
    worker: int
    pid: int
    position: int  # records read in the latest checkpoint when the attempt started


class WorkerKiller(Watch):
    """Follows the coordinator's log across its attempts and kills one worker of
    each of the first ``KILLS`` attempts; never the coordinator itself."""

    def __init__(self, storage: str, release: Path) -> None:
        self.storage = storage
        self.release = release  # lets the job read its last records
        self.rng = random.Random(SEED)
        self.kills: list[Kill] = []
        self.pids: list[int] = []  # the running attempt's workers; [] once one is killed
        self.trigger: Trigger | None = None
        self.position = 0
        self.writes = self.completes = 0
        self.deadline: float | None = None

    def choose(self) -> Trigger | None:
        """The next attempt's kill (None: let it finish). Near the end of the input,
        only kills before its first checkpoint can complete, which cannot move the
        job on to its end before it has been killed ``KILLS`` times."""
        if len(self.kills) >= KILLS:
            return None
        if self.position >= 0.8 * EVENTS:
            return Trigger("delay", delay_ms=self.rng.uniform(0, INTERVAL_MS / 2))
        return self.rng.choice([
            Trigger("write", 1), Trigger("write", 2),
            Trigger("complete", 1), Trigger("complete", 2),
            Trigger("delay", delay_ms=self.rng.uniform(0, 6 * INTERVAL_MS)),
        ])

    def fires(self, line: str) -> bool:
        if match := STARTED.match(line):
            assert int(match.group(1)) == WORKERS, line
            self.pids = [int(pid) for pid in match.group(2).split(", ")]
            assert len(self.pids) == WORKERS, line
            position = checkpoint_position(self.storage)
            assert position >= self.position, "the source position went backwards"
            self.position = position
            self.writes = self.completes = 0
            self.trigger = self.choose()
            if self.trigger is None:
                self.release.touch()  # done killing: this attempt may run to the end
            elif self.trigger.kind == "delay":
                self.deadline = CLOCK.now() + self.trigger.delay_ms
            return False
        trigger = self.trigger
        if trigger is None or not self.pids:
            return False
        if WRITING.match(line):
            self.writes += 1
            return trigger.kind == "write" and self.writes == trigger.n
        if COMPLETE.match(line):
            self.completes += 1
            return trigger.kind == "complete" and self.completes == trigger.n
        return False

    def strike(self, proc: subprocess.Popen[bytes]) -> bool:
        self.deadline = None
        assert self.trigger is not None and self.pids
        worker = self.rng.randrange(WORKERS)
        pid = self.pids[worker]
        self.pids = []
        os.kill(pid, signal.SIGKILL)  # a worker the coordinator started, never a stranger
        self.kills.append(Kill(self.trigger, worker, pid, self.position))
        return False  # the coordinator goes on: keep reading its log


def checkpoint_position(storage: str) -> int:
    """The records read in the latest complete checkpoint, over every worker's
    partitions (0 before the first). Read while the coordinator may be writing
    the next one: the storage is SQLite in WAL mode."""
    if not Path(storage.removeprefix("sqlite:///")).exists():
        return 0
    with open_storage(storage) as checkpoints:
        latest = checkpoints.latest(job.JOB)
    if latest is None:
        return 0
    return sum(sum(loads(state.meta).values()) for name, state in latest.operators.items()
               if name.partition("@")[0] == "events")


def committed(directory: Path) -> Counter[tuple[int, int, int]]:
    """The visible part files' rows (user, window start, count), as a multiset."""
    return Counter(tuple(json.loads(line)) for path in sorted(directory.glob("part-*"))
                   for line in path.read_bytes().splitlines())


@pytest.mark.slow
def test_workers_killed_again_and_again_restart_and_commit_exactly_once(
        tmp_path: Path, record_property: Any) -> None:
    began = CLOCK.now()
    out = tmp_path / "out"
    storage = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    command = [sys.executable, str(JOB_SCRIPT), str(out), storage, "--events", str(EVENTS),
               "--seed", str(SEED), "--interval", str(INTERVAL_MS), "--workers",
               str(WORKERS), "--attempts", str(3 * KILLS), "--hold", str(tmp_path)]
    killer = WorkerKiller(storage, tmp_path / "release")
    attempt = run_attempt(command, tmp_path, killer)
    lines = attempt.lines
    (tmp_path / "coordinator.log").write_text("\n".join(lines))  # for a failure's reader
    assert attempt.returncode == 0, lines[-20:]
    assert job.DONE in lines

    kills = killer.kills
    restarts = [RESTART.match(line) for line in lines]
    restarted = [(int(m.group(1)), int(m.group(2))) for m in restarts if m is not None]
    restored = [int(m.group(1)) for line in lines if (m := RESTORES.match(line))]
    summary = (f"{len(kills)} worker kills, {len(restarted)} restarts; by trigger "
               f"{dict(Counter(str(k.trigger) for k in kills))}; restored from checkpoints "
               f"{restored}; source positions when killed "
               f"{[round(k.position / EVENTS, 2) for k in kills]}; "
               f"{(CLOCK.now() - began) / 1000:.1f} s")
    print(summary)
    record_property("workers_crash_summary", summary)
    assert len(kills) >= MIN_KILLS, summary
    # every kill, and nothing else, made the coordinator restart the job
    assert restarted == [(k.worker, k.pid) for k in kills], summary
    assert [int(m.group(3)) for m in restarts if m is not None] == list(
        range(1, len(kills) + 1))
    assert sum(STARTED.match(line) is not None for line in lines) == len(kills) + 1
    # restarts resumed from checkpoints, never an older one than before
    assert len(restored) >= len(kills) // 2, summary
    assert restored == sorted(restored), summary
    assert kills[-1].position > 0, summary

    expected = job.expected(job.events(EVENTS, SEED, job.USERS))
    assert sum(expected.values()) == EVENTS // job.PARTITIONS * job.PARTITIONS
    actual = committed(out)
    assert all(n == 1 for n in actual.values()), (
        f"duplicated rows: {[row for row, n in actual.items() if n > 1][:5]}")
    assert {(user, start): n for user, start, n in actual} == expected, summary
    assert {p.name.split("-")[1] for p in out.glob("part-*")} == {"0", "1"}  # both wrote
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
