"""The Kafka crash test: a topic-to-topic job killed with SIGKILL over and over
still writes its output to Kafka exactly once.

``tests/kafka_crash_job.py`` (a keyed event-time window count over 1,000,000
events of a 4-partition topic, written by ``to_kafka(delivery="exactly-once")``
with a checkpoint every 50 ms) runs in a subprocess. The test kills it with
SIGKILL at moments drawn from a seeded ``random.Random`` and starts it again,
``KILLS`` times anywhere in its input and twice more in the checkpoints that
end it, then lets it finish. A ``read_committed`` consumer must then read
exactly the counts a brute-force count of the input gives, each once; a run
without kills must write the same.

Kills are timed on the child's log, read line by line from its stderr, not on
sleeps. The kinds that matter to the sink:

* ``complete``: right after "checkpoint N complete", following a line saying
  the sink committed a transaction (so that output flows and checkpoint N most
  likely holds a pre-committed transaction): the checkpoint is durable, Kafka
  has not committed; the restore must send that transaction's records again.
* ``committed``: right after "sink ... committed the transaction of checkpoint
  N": Kafka has committed, the job has not gone on; the restore must not send
  them again.
* ``write``: right after "writing checkpoint N": the kill lands while the
  checkpoint is written (or just after).
* ``delay``: a random number of milliseconds after the job started or after a
  checkpoint completed: anywhere in the processing.

The next attempt logs which of the first two it found (the sink's "sending
its N records again" or "committed before the restart"): the test counts both
and requires each at least once, so the two restore paths really ran.

How far an attempt moves the job on is a matter of timing, not of the seed.
The test reads the source position of the latest checkpoint from the storage
after every kill, to stop moving the job on when it nears the end (it must
not finish before it has been killed ``KILLS`` times) and to check that the
position never goes backwards.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kafka_crash_job as job
import pytest
from killing import CLOCK, Attempt, Watch, run_attempt

from streamlet.state.checkpoint_storage import open_storage
from streamlet.state.snapshots import loads

EVENTS = 1_000_000
PARTITIONS = 4
USERS = 100
SEED = 20240611
INTERVAL_MS = 50
KILLS = 12
"""Kills anywhere in the input; two more follow in the checkpoints that end the job."""
MIN_KILLS = 10

WRITING = re.compile(r"^DEBUG writing checkpoint (\d+) of job")
COMPLETE = re.compile(r"^INFO checkpoint (\d+) of job .* complete")
COMMITTED = re.compile(r"^DEBUG sink .* committed the transaction of checkpoint (\d+)$")
LAST_EVENT = re.compile(r"^INFO last event of partition (\d+) read$")
STARTED = re.compile(r"restored from checkpoint \d+|no checkpoint of job")
RESENT = re.compile(r"^WARNING sink .* did not commit before the restart; sending its (\d+) "
                    r"records again$")
ALREADY = re.compile(r"^INFO sink .* was committed before the restart$")


@dataclass(frozen=True)
class Trigger:
    """When to kill one attempt.

    ``write``: right after the ``n``-th "writing checkpoint" line;
    ``committed``: right after the ``n``-th line saying the sink committed;
    ``complete``: right after the first "complete" line that follows the
    ``n``-th committed line (``n = 0``: the first complete line); ``delay``:
    ``delay_ms`` after the ``n``-th complete line (``n = 0``: after the line
    saying the job started). With ``at_end``, lines count only once the job
    has read the last event of every partition: the kill is aimed at the
    checkpoints that end the job.
    """

    kind: str
    n: int
    delay_ms: float = 0.0
    at_end: bool = False

    def __str__(self) -> str:
        return f"{self.kind}@{self.n}" + (" at the end" if self.at_end else "")


@dataclass
class Kill:
    trigger: Trigger
    line: str  # the line the kill followed (the last one read)
    writing: int | None  # the checkpoint whose write had started and not completed
    during_write: bool = False  # ... and is not in the storage after the kill
    position: int = 0  # events read, by the source position of the latest checkpoint
    recovery: str = "-"  # what the sink's restore in the next attempt found


class KillWatch(Watch):
    def __init__(self, trigger: Trigger, ended: set[int]) -> None:
        self.trigger = trigger
        self.ended = set(ended)  # partitions read to their end
        self.counting = not trigger.at_end or len(self.ended) == PARTITIONS
        self.writing: int | None = None
        self.writes = self.completes = self.commits = 0

    def fires(self, line: str) -> bool:
        trigger = self.trigger
        if match := LAST_EVENT.match(line):
            self.ended.add(int(match.group(1)))
            self.counting = self.counting or len(self.ended) == PARTITIONS
        elif match := WRITING.match(line):
            self.writing = int(match.group(1))
            self.writes += self.counting
            return trigger.kind == "write" and self.counting and self.writes == trigger.n
        elif match := COMPLETE.match(line):
            self.writing = None
            if not self.counting:
                return False
            self.completes += 1
            if trigger.kind == "complete":
                return self.commits >= trigger.n
            if trigger.kind == "delay" and self.completes == trigger.n:
                self.deadline = CLOCK.now() + trigger.delay_ms
        elif COMMITTED.match(line):
            self.commits += self.counting
            return trigger.kind == "committed" and self.counting and self.commits == trigger.n
        elif STARTED.search(line) and trigger.kind == "delay" and trigger.n == 0:
            self.deadline = CLOCK.now() + trigger.delay_ms
        return False


def checkpoint_state(storage: str, job_name: str) -> tuple[set[int], dict[tuple[str, int], int]]:
    """The ids of the complete checkpoints, and the Kafka source's position in the
    latest: ``{(topic, partition): next offset}``."""
    with open_storage(storage) as checkpoints:
        ids = {info.checkpoint_id for info in checkpoints.list(job_name)}
        latest = checkpoints.latest(job_name)
    position = {} if latest is None else loads(latest.operators[job.SOURCE].meta)
    return ids, position


def choose(rng: random.Random, kills: list[Kill]) -> Trigger | None:
    """The next kill, or None to let the job finish.

    First ``KILLS`` kills anywhere: ``PLAN`` says which kind, while the input
    lasts; a job restored near the end of its input (or once the plan is
    used up) is killed only before its first checkpoint completes, which
    cannot move it on to its end, in turns in a write and after a delay.
    The first four, two of each kind aimed at the sink, go ahead nearer the
    end than the others: they fire at the latest in the commit that ends the
    job. Then two in the checkpoints that end the job: in a write, and right
    after one completed (before the sink has committed it).
    """
    position = kills[-1].position if kills else 0
    if len(kills) < KILLS:
        kind = PLAN[len(kills)] if len(kills) < len(PLAN) else "-"
        near_end = (0.9 if len(kills) < 4 else 0.75) * EVENTS
        if position >= near_end or kind == "-":
            if sum(k.trigger.kind == "write" for k in kills) <= sum(
                    k.trigger.kind == "delay" for k in kills):
                return Trigger("write", 1)
            return Trigger("delay", 0, rng.uniform(0, INTERVAL_MS))
        if kind in ("complete", "committed"):
            # the first commit: a checkpoint or two into the attempt (a
            # checkpoint covers some 10 % of the input), or right away when the
            # restore sends a transaction again
            return Trigger(kind, 1)
        return Trigger("delay", 1, rng.uniform(0, 100))
    at_end = sum(k.trigger.at_end for k in kills)
    if at_end == 0:
        return Trigger("write", 1, at_end=True)
    if at_end == 1:
        return Trigger("complete", 0, at_end=True)
    return None


def _plan(rng: random.Random) -> list[str]:
    """The kinds of the kills that move the job on: two of each of the kinds
    aimed at the sink first, then more of them and two random delays."""
    first, then = ["complete", "committed"] * 2, ["complete", "committed", "delay", "delay"]
    rng.shuffle(first)
    rng.shuffle(then)
    return first + then


PLAN = _plan(random.Random(SEED))


def crash_until_done(command: list[str], cwd: Path, storage: str, job_name: str
                     ) -> tuple[list[Kill], int]:
    """Run the job, killing it as ``choose`` says, until an attempt finishes;
    return the kills and the number of attempts."""
    rng = random.Random(SEED)
    kills: list[Kill] = []
    attempts = 0
    ended: set[int] = set()  # partitions read to their end in the latest checkpoint
    while True:
        trigger = choose(rng, kills)
        watch = Watch() if trigger is None else KillWatch(trigger, ended)
        attempt = run_attempt(command, cwd, watch)
        attempts += 1
        if kills:
            kills[-1].recovery = recovery(attempt)
        if attempt.returncode == 0:
            assert job.DONE in attempt.lines
            return kills, attempts
        assert attempt.killed and isinstance(watch, KillWatch), (
            f"attempt {attempts} failed (exit {attempt.returncode}): {attempt.lines[-20:]}")
        ids, offsets = checkpoint_state(storage, job_name)
        kill = Kill(watch.trigger, attempt.lines[-1] if attempt.lines else "", watch.writing,
                    position=sum(offsets.values()))
        if kills:
            assert kill.position >= kills[-1].position, "the source position went backwards"
        kill.during_write = kill.writing is not None and kill.writing not in ids
        kills.append(kill)
        ended = {p for (_, p), offset in offsets.items() if offset >= EVENTS // PARTITIONS}
        assert attempts < 100, "the job does not get anywhere"


def recovery(attempt: Attempt) -> str:
    """What the sink found when the attempt restored its checkpoint."""
    for line in attempt.lines:
        if RESENT.match(line):
            return "resent"
        if ALREADY.match(line):
            return "already committed"
    return "-"  # nothing pending, or killed before the sink restored


@pytest.mark.slow
async def test_a_kafka_job_killed_again_and_again_writes_each_count_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path, record_property: Any) -> None:
    began = CLOCK.now()
    in_topic = await kafka_topic(partitions=PARTITIONS, prefix="crash-in")
    clean_topic = await kafka_topic(partitions=PARTITIONS, prefix="crash-clean")
    out_topic = await kafka_topic(partitions=PARTITIONS, prefix="crash-out")
    users = job.event_users(EVENTS, SEED, USERS)
    # Kafka timestamps an hour old: recent enough for the broker's retention
    # (by timestamp) to keep them, old enough not to lie in the future
    base_ms = (began - 3_600_000) // 1_000 * 1_000
    await job.produce_events(kafka_bootstrap, in_topic, users, PARTITIONS, base_ms)
    expected = job.expected_rows(users, base_ms)
    assert sum(count for (_, _, count) in expected) == EVENTS
    produced = CLOCK.now()

    def argv(out: str, storage: str, name: str) -> list[str]:
        return job.command(kafka_bootstrap, in_topic, out, storage, name, EVENTS, PARTITIONS,
                           INTERVAL_MS)

    # the failure-free run writes the oracle's counts, each once
    run = f"crash-{uuid.uuid4().hex[:8]}"  # job names: transactional ids of their own
    clean = await asyncio.to_thread(
        run_attempt, argv(clean_topic, f"sqlite:///{tmp_path / 'clean.db'}", f"{run}-clean"),
        tmp_path, Watch())
    assert clean.returncode == 0, clean.lines[-20:]
    problem = job.differences(await job.committed_rows(kafka_bootstrap, clean_topic), expected)
    assert problem is None, f"the run without kills: {problem}"
    clean_s = (CLOCK.now() - produced) / 1000

    storage = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    kills, attempts = await asyncio.to_thread(
        crash_until_done, argv(out_topic, storage, run), tmp_path, storage, run)
    rows = await job.committed_rows(kafka_bootstrap, out_topic)

    outcomes = Counter(k.recovery for k in kills)
    summary = (f"{len(kills)} kills in {attempts} attempts; by kind "
               f"{dict(Counter(k.trigger.kind for k in kills))}, by trigger "
               f"{dict(Counter(str(k.trigger) for k in kills))}; "
               f"{sum(k.during_write for k in kills)} during a checkpoint write; "
               f"the sink's restore after them: {dict(outcomes)}; source positions after the "
               f"kills {[round(k.position / EVENTS, 2) for k in kills]}; "
               f"{len(rows)} records read back; input {(produced - began) / 1000:.1f} s, "
               f"clean run {clean_s:.1f} s, total {(CLOCK.now() - began) / 1000:.1f} s")
    print(summary)
    record_property("kafka_crash_summary", summary)

    problem = job.differences(rows, expected)
    assert problem is None, f"{problem}; {summary}"

    assert len(kills) >= MIN_KILLS, summary
    for kind in ("write", "complete", "committed", "delay"):
        assert sum(k.trigger.kind == kind for k in kills) >= 2, summary
    assert sum(k.trigger.at_end for k in kills) >= 1, summary
    # both restore paths ran: a pre-committed transaction sent again, and one
    # that Kafka had committed left alone
    assert outcomes["resent"] >= 1, summary
    assert outcomes["already committed"] >= 1, summary
