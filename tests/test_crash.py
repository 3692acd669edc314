"""The crash test: a job killed with SIGKILL over and over still commits its
output exactly once.

``tests/crash_job.py`` (a keyed event-time window count over 1,000,000
events from ``from_iterable``, written by ``to_files``, with a checkpoint
every few ms) runs in a subprocess. The test kills it with SIGKILL at moments
drawn from a seeded ``random.Random`` and starts it again: ``KILLS`` times
anywhere in its input, twice more in the checkpoints that end it, then lets
it finish. The committed part files must then hold, record for record, what
a run without kills commits: nothing lost, nothing duplicated, nothing
hidden left behind.

Kills are timed on the child's checkpoint log, read line by line from its
stderr, rather than on sleeps: right after "writing checkpoint N" (the kill
lands while checkpoint N is being written; the test checks afterwards that N
is indeed not in the storage), right after "checkpoint N complete" (the
checkpoint is durable but the file sink has not yet renamed its part files),
or a random number of milliseconds after one of those lines (anywhere in the
processing). Which line, and how long after, is the seeded part.

An attempt killed before its first checkpoint completed restarts where the
previous one did; one killed later moves the job on. How far is a matter of
timing, not of the seed: records keep flowing while a checkpoint is written,
and a write in a busy job can take long enough for the rest of the input to
be read. The test reads the source position of the latest checkpoint from
the storage after every kill, to stop moving the job on when it nears the
end (it must not finish before it has been killed ``KILLS`` times) and to
check that the position never goes backwards.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from killing import CLOCK, Watch
from killing import run_attempt as run_child

from streamlet.state.checkpoint_storage import open_storage
from streamlet.state.snapshots import loads

JOB_SCRIPT = Path(__file__).with_name("crash_job.py")
JOB = "crash"  # crash_job.JOB
LAST_EVENT = "INFO last event read"  # crash_job.LAST_EVENT
DONE = "INFO job done"  # crash_job.DONE
EVENTS = 1_000_000
SEED = 20240605
INTERVAL_MS = 20
KILLS = 24
"""Kills per run; the issue asks for at least 20."""
MIN_KILLS = 20

WRITING = re.compile(r"^DEBUG writing checkpoint (\d+) of job")
COMPLETE = re.compile(r"^INFO checkpoint (\d+) of job .* complete")
STARTED = re.compile(r"restored from checkpoint \d+|no checkpoint of job|starts without state")


@dataclass(frozen=True)
class Trigger:
    """When to kill one attempt.

    ``kind``: ``"write"`` kills right after the ``n``-th "writing checkpoint"
    line of the attempt; ``"complete"`` right after the ``n``-th "complete"
    line; ``"delay"`` ``delay_ms`` after the ``n``-th complete line (``n = 0``:
    after the line saying the job started), or at the next "writing" line if
    that comes first. With ``after_last_event``, lines count only once the job
    has read its last event. ``at_end`` marks the kills aimed at the
    checkpoints that end the job.
    """

    kind: str
    n: int
    delay_ms: float = 0.0
    at_end: bool = False
    after_last_event: bool = False

    def __str__(self) -> str:
        return f"{self.kind}@{self.n}" + (" at the end" if self.at_end else "")


@dataclass
class Kill:
    trigger: Trigger
    line: str  # the line the kill followed (the last one read)
    writing: int | None  # the checkpoint whose write had started and not completed
    during_write: bool = False  # ... and is not in the storage after the kill
    position: int = 0  # the source position of the latest checkpoint after the kill


@dataclass
class Attempt:
    returncode: int
    lines: list[str]
    kill: Kill | None  # None: not killed


def child_command(out_dir: Path, storage: str) -> list[str]:
    return [sys.executable, str(JOB_SCRIPT), str(out_dir), storage, "--events", str(EVENTS),
            "--seed", str(SEED), "--interval", str(INTERVAL_MS)]


class _Watch(Watch):
    """Follows one attempt's log and says when ``trigger`` fires."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.line = ""  # the last line read: the one a kill followed
        self.counting = not trigger.after_last_event
        self.writing: int | None = None
        self.writes = self.completes = 0
        self.deadline: float | None = None  # a "delay" trigger's moment (ms), once known

    def fires(self, line: str) -> bool:
        self.line = line
        trigger = self.trigger
        if line == LAST_EVENT:
            self.counting = True
        elif match := WRITING.match(line):
            self.writing = int(match.group(1))
            self.writes += self.counting
            if trigger.kind == "write":
                return self.counting and self.writes == trigger.n
            return trigger.kind == "delay" and self.deadline is not None
        elif match := COMPLETE.match(line):
            self.writing = None
            self.completes += self.counting
            if self.counting and self.completes == trigger.n:
                if trigger.kind == "complete":
                    return True
                if trigger.kind == "delay":
                    self.deadline = CLOCK.now() + trigger.delay_ms
        elif STARTED.search(line) and trigger.kind == "delay" and trigger.n == 0:
            self.deadline = CLOCK.now() + trigger.delay_ms
        return False


def run_attempt(command: list[str], cwd: Path, trigger: Trigger | None) -> Attempt:
    """Start the job and kill it as ``trigger`` says (``None``: let it finish)."""
    watch = Watch() if trigger is None else _Watch(trigger)
    child = run_child(command, cwd, watch)
    kill = None
    if child.killed:  # (a child that exited by itself just before the kill was not)
        assert isinstance(watch, _Watch)
        kill = Kill(watch.trigger, watch.line, watch.writing)
    return Attempt(child.returncode, child.lines, kill)


def checkpoint_state(storage: str) -> tuple[set[int], int]:
    """The ids of the complete checkpoints, and the source position of the latest."""
    with open_storage(storage) as checkpoints:
        ids = {info.checkpoint_id for info in checkpoints.list(JOB)}
        latest = checkpoints.latest(JOB)
    position = 0 if latest is None else loads(latest.operators["events"].meta)
    return ids, position


def choose(rng: random.Random, kills: list[Kill]) -> Trigger | None:
    """The next kill, or None to let the job finish.

    First ``KILLS`` kills anywhere; near the end of the input, or to make
    sure one kill lands in a write, only ones before the attempt's first
    checkpoint completes, which cannot move the job on to its end. Then two
    in the checkpoints that end the job: in a write, and right after one
    completed (before the sink has committed what it covers).
    """
    position = kills[-1].position if kills else 0
    during_write = sum(k.during_write for k in kills)
    if len(kills) < KILLS or during_write == 0:
        if position >= 0.85 * EVENTS or (len(kills) >= KILLS - 3 and during_write == 0):
            return rng.choice([Trigger("write", 1),
                               Trigger("delay", 0, rng.uniform(0, INTERVAL_MS))])
        return rng.choice([
            Trigger("write", 1),
            Trigger("delay", 0, rng.uniform(0, 2 * INTERVAL_MS)),
            Trigger("write", 2),
            Trigger("complete", 1),
            Trigger("delay", 1, rng.uniform(0, 150)),
        ])
    # A job restored at the end of its input reads no more: its first
    # checkpoints are the ones that end it.
    after_last_event = position < EVENTS
    at_end = sum(k.trigger.at_end for k in kills)
    if at_end == 0:
        return Trigger("write", 1, at_end=True, after_last_event=after_last_event)
    if at_end == 1:
        return Trigger("complete", 1, at_end=True, after_last_event=after_last_event)
    return None


def committed_lines(directory: Path) -> list[bytes]:
    """The visible part files' lines, files in name order: what a reader sees."""
    lines: list[bytes] = []
    for path in sorted(directory.glob("part-*")):
        lines.extend(path.read_bytes().splitlines())
    return lines


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def storage_url(tmp_path: Path, kind: str, name: str) -> str:
    return (f"sqlite:///{tmp_path / (name + '.db')}" if kind == "sqlite"
            else f"file://{tmp_path / name}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_job_killed_again_and_again_commits_what_a_failure_free_run_commits(
        kind: str, tmp_path: Path, record_property: Any) -> None:
    began = CLOCK.now()
    clean_out = tmp_path / "clean"
    clean = run_attempt(child_command(clean_out, storage_url(tmp_path, kind, "clean")),
                        tmp_path, None)
    assert clean.returncode == 0, clean.lines[-20:]
    expected = committed_lines(clean_out)
    # every event is counted once, in one window of its user
    assert sum(json.loads(line)[2] for line in expected) == EVENTS

    out = tmp_path / "out"
    storage = storage_url(tmp_path, kind, "checkpoints")
    command = child_command(out, storage)
    rng = random.Random(SEED)
    kills: list[Kill] = []
    attempts = 0
    while True:
        attempt = run_attempt(command, tmp_path, choose(rng, kills))
        attempts += 1
        if attempt.returncode == 0:
            break
        kill = attempt.kill
        assert kill is not None, (f"attempt {attempts} failed (exit {attempt.returncode}): "
                                  f"{attempt.lines[-20:]}")
        ids, kill.position = checkpoint_state(storage)
        if kills:
            assert kill.position >= kills[-1].position, "the source position went backwards"
        kill.during_write = kill.writing is not None and kill.writing not in ids
        kills.append(kill)
        assert attempts < 200, "the job does not get anywhere"
    assert DONE in attempt.lines

    during_write = sum(k.during_write for k in kills)
    summary = (f"{kind}: {len(kills)} kills in {attempts} attempts, {during_write} during a "
               f"checkpoint write; by trigger {dict(Counter(str(k.trigger) for k in kills))}; "
               f"source positions after the kills "
               f"{[round(k.position / EVENTS, 2) for k in kills]}; "
               f"{(CLOCK.now() - began) / 1000:.1f} s")
    print(summary)
    record_property("crash_summary", summary)
    assert len(kills) >= MIN_KILLS, summary
    assert during_write >= 1, summary
    assert sum(k.trigger.at_end for k in kills) >= 1, summary

    actual = committed_lines(out)
    assert len(actual) == len(expected), summary
    assert actual == expected, summary
    assert hidden(out) == []
