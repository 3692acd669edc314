"""A topic-to-topic job rides out a broker outage by itself and still writes
its output exactly once.

``tests/kafka_crash_job.py`` (a keyed event-time window count over the events
of a 4-partition topic, read with ``bounded=True`` and written by
``to_kafka(delivery="exactly-once")``, a checkpoint every 100 ms) runs in a
subprocess. Right after the sink's second "committed the transaction" line the
test freezes the job (SIGSTOP) and runs ``scripts/kafka restart 10``: the
broker stops (its data kept), stays down for 10 seconds and starts again on
the same port. Once the broker has stopped, the job goes on (SIGCONT), so the
outage finds it in the middle of its input with output to write: its sink
waits to hand the producer its next batches, then flushes, commits its marker
and its transaction after the restart; its source fetches and commits offsets
across it. The job is not restarted: its Kafka clients must wait for the
broker and go on, and a ``read_committed`` consumer must then read exactly the
counts a brute-force count of the input gives, each once.

The restart is timed on the job's log and on the restart script's own output,
not on sleeps, and the test checks that the outage really fell in the middle
of the job: the job read the last event of some partition only after the
broker had stopped.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import kafka_crash_job as job
import pytest
from killing import CLOCK, Watch, run_attempt

EVENTS = 500_000
PARTITIONS = 4
USERS = 100
SEED = 20240612
INTERVAL_MS = 100
RESTART_AT = 2
"""The restart starts right after the sink's second "committed the transaction" line:
output flows, and the sink has more of it to write."""
DOWN_S = 10
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kafka"

COMPLETE = re.compile(r"^INFO checkpoint (\d+) of job .* complete")
COMMITTED = re.compile(r"^DEBUG sink .* committed the transaction of checkpoint (\d+)$")
LAST_EVENT = re.compile(r"^INFO last event of partition (\d+) read$")


class RestartWatch(Watch):
    """At the ``RESTART_AT``-th commit line: freezes the job (SIGSTOP), starts
    ``scripts/kafka restart``, lets the job go on (SIGCONT) once the broker has
    stopped, and sorts the job's lines by what the broker was doing."""

    def __init__(self) -> None:
        self.commits = 0
        self.restart: subprocess.Popen[str] | None = None
        self.restart_log: list[str] = []
        self.back = threading.Event()  # scripts/kafka says the broker answers again
        self.stopped = False
        self.before: list[str] = []
        self.during: list[str] = []  # lines read while the broker was down
        self.after: list[str] = []

    def fires(self, line: str) -> bool:
        if self.back.is_set():
            self.after.append(line)
        elif self.stopped:
            self.during.append(line)
        else:
            self.before.append(line)
        if COMMITTED.match(line):
            self.commits += 1
            if self.commits == RESTART_AT:
                self._restart()
        return False  # never kill: the job must get through by itself

    def _restart(self) -> None:
        # Frozen, the job cannot get its next records out before the broker
        # stops (which takes a moment): it goes on against a stopped broker, in
        # the middle of its input, its sink with records to send.
        os.kill(self.pid, signal.SIGSTOP)
        try:
            restart = subprocess.Popen([str(SCRIPT), "restart", str(DOWN_S)],
                                       cwd=SCRIPT.parents[1],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            assert restart.stdout is not None
            self.restart = restart
            for line in restart.stdout:
                self.restart_log.append(line.rstrip("\n"))
                if "stopped the broker" in line:
                    self.stopped = True
                    break
        finally:
            os.kill(self.pid, signal.SIGCONT)
        assert self.stopped, f"the broker did not stop: {self.restart_log}"

        def follow(stream: Any = restart.stdout) -> None:
            for line in stream:
                self.restart_log.append(line.rstrip("\n"))
                if line.startswith("KAFKA_BOOTSTRAP="):
                    self.back.set()

        threading.Thread(target=follow, daemon=True).start()

    def wait(self) -> int:
        """The restart's exit status, once it has ended."""
        assert self.restart is not None, "the job ended before the broker was restarted"
        status = self.restart.wait(timeout=120)
        assert self.restart.stdout is not None
        self.restart.stdout.close()
        return status


def kafka_dir(bootstrap: str) -> str:
    """The run directory of the broker at ``bootstrap`` (``STREAMLET_KAFKA_DIR``, which
    scripts/test exports): what ``scripts/kafka restart`` restarts."""
    run = os.environ.get("STREAMLET_KAFKA_DIR", "")
    if not run:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("STREAMLET_KAFKA_DIR is not set: scripts/test exports it", pytrace=False)
        pytest.skip("STREAMLET_KAFKA_DIR is not set: this test restarts the broker that "
                    "scripts/test starts")
    where = Path(run) / "bootstrap"
    assert where.is_file() and where.read_text().strip() == bootstrap, (
        f"STREAMLET_KAFKA_DIR={run} is not the broker at {bootstrap}: not restarting it")
    return run


@pytest.mark.slow
async def test_a_kafka_job_rides_out_a_broker_restart_and_writes_each_count_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path, record_property: Any) -> None:
    kafka_dir(kafka_bootstrap)
    began = CLOCK.now()
    in_topic = await kafka_topic(partitions=PARTITIONS, prefix="restart-in")
    out_topic = await kafka_topic(partitions=PARTITIONS, prefix="restart-out")
    users = job.event_users(EVENTS, SEED, USERS)
    base_ms = (began - 3_600_000) // 1_000 * 1_000  # as in test_kafka_crash.py
    await job.produce_events(kafka_bootstrap, in_topic, users, PARTITIONS, base_ms)
    expected = job.expected_rows(users, base_ms)

    name = f"restart-{uuid.uuid4().hex[:8]}"
    command = job.command(kafka_bootstrap, in_topic, out_topic,
                          f"sqlite:///{tmp_path / 'checkpoints.db'}", name, EVENTS, PARTITIONS,
                          INTERVAL_MS)
    watch = RestartWatch()
    started = CLOCK.now()
    attempt = await asyncio.to_thread(run_attempt, command, tmp_path, watch)
    ran_s = (CLOCK.now() - started) / 1000
    restarted = await asyncio.to_thread(watch.wait)
    assert restarted == 0, watch.restart_log
    assert attempt.returncode == 0, attempt.lines[-30:]
    assert job.DONE in watch.after, "the job ended before the broker was back"

    rows = await job.committed_rows(kafka_bootstrap, out_topic)
    read_last = [line for line in watch.during + watch.after if LAST_EVENT.match(line)]
    completes = {when: sum(bool(COMPLETE.match(line)) for line in lines) for when, lines in
                 (("before", watch.before), ("during", watch.during), ("after", watch.after))}
    summary = (f"broker restart after commit {RESTART_AT}: {len(watch.during)} lines from "
               f"the job while the broker was down, checkpoints completed {completes}; "
               f"{len(rows)} records read back; job {ran_s:.1f} s, total "
               f"{(CLOCK.now() - began) / 1000:.1f} s")
    print(summary)
    record_property("kafka_broker_restart_summary", summary)
    # the outage fell in the middle of the job: it was still reading
    assert read_last, f"the job had read all its input before the broker stopped; {summary}"

    problem = job.differences(rows, expected)
    assert problem is None, f"{problem}; {summary}"
