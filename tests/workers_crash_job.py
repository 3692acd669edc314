"""The job that ``tests/test_workers_crash.py`` runs in a subprocess, killing
its worker processes.

A keyed event-time window count over a deterministic set of events in
``PARTITIONS`` partitions (``from_partitions``: with two workers, each reads
half of them), run over ``--workers`` worker processes, written through the
exactly-once file sink, with a checkpoint every few milliseconds and a
fixed-delay restart strategy: when a worker dies, the coordinator (this
process) starts new workers from the latest complete checkpoint by itself.

The coordinator's log (``streamlet``, ``streamlet.checkpoints`` at DEBUG,
``streamlet.cluster``) goes to stderr one line at a time; the parent times
its kills on it ("runs on 2 workers (pids ...)" says which processes to kill)
and on the line the job adds when it is done.

With ``--hold DIR`` every reader holds back its partitions' last batch until
``DIR/release`` exists: no attempt reaches the end of the input before the
parent has killed enough workers (a kill meant for a running attempt would
otherwise land after it finished, however fast the job gets), and the parent
writes the file when it is done killing.

    python tests/workers_crash_job.py OUT_DIR STORAGE_URL [--events N] [--seed S]
                                      [--interval MS] [--users U] [--workers W]
                                      [--hold DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from pathlib import Path
from typing import Any

from crash_job import DISORDER_MS, WINDOW_MS, count_windows

import streamlet as sl
from streamlet.connectors.collections import PartitionsReader
from streamlet.core.batch import Batch
from streamlet.core.source import Source, SourceReader

JOB = "workers-crash"
PARTITIONS = 4
# Timestamps in a partition run 2 ms apart plus up to DISORDER_MS of jitter: out of
# order, within the bound of the partition's watermarks.
USERS = 300
DONE = "INFO job done"


def events(count: int, seed: int, users: int) -> list[list[tuple[int, int]]]:
    """``(user, timestamp)`` pairs in ``PARTITIONS`` partitions, the same for the same
    arguments."""
    bits = random.Random(seed).getrandbits
    per = count // PARTITIONS
    return [[(bits(16) % users, i * 2 + bits(16) % DISORDER_MS) for i in range(per)]
            for _ in range(PARTITIONS)]


def expected(partitions: list[list[tuple[int, int]]]) -> dict[tuple[int, int], int]:
    """The oracle: the count of every user's window."""
    counts: dict[tuple[int, int], int] = {}
    for partition in partitions:
        for user, timestamp in partition:
            window = (user, timestamp - timestamp % WINDOW_MS)
            counts[window] = counts.get(window, 0) + 1
    return counts


class HeldPartitions(Source):
    """``from_partitions``, except that a reader reads no further than each
    partition's last batch until ``directory/release`` exists."""

    def __init__(self, data: list[list[tuple[int, int]]], directory: Path) -> None:
        self.data = data
        self.directory = directory

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        data, release = self.data, self.directory / "release"
        hold = min(len(p) for p in data) - batch_size

        class Reader(PartitionsReader):
            async def next_batch(self) -> Batch | None:
                if any(len(data[p]) > n >= hold for p, n in self.position().items()):
                    # the test's go-ahead, from another process: no Event reaches here
                    while not release.exists():  # noqa: ASYNC110
                        await asyncio.sleep(0.01)  # barriers pass meanwhile
                return await super().next_batch()

        return Reader(name, data, batch_size)


def build(out_dir: str, storage: str, partitions: list[list[tuple[int, int]]],
          interval_ms: int, workers: int, attempts: int,
          hold: str | None = None) -> sl.Pipeline:
    p = sl.Pipeline(JOB, workers=workers,
                    checkpointing=sl.Checkpointing(interval=interval_ms, storage=storage),
                    restart_strategy=sl.RestartStrategy.fixed_delay(attempts=attempts,
                                                                    delay=10))
    source: Any = (p.from_partitions(partitions, name="events") if hold is None else
                   p.from_source(HeldPartitions(partitions, Path(hold)), name="events"))
    count_windows(source, lambda e: e[1], out_dir)
    return p


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("storage")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--interval", type=int, default=50, help="checkpoint interval, ms")
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--attempts", type=int, default=100, help="restarts allowed")
    parser.add_argument("--hold", help="hold the partitions' last batch until HOLD/release")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)  # flushes after every line
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("streamlet").addHandler(handler)  # and its children's lines
    logging.getLogger("streamlet").setLevel(logging.INFO)
    logging.getLogger("streamlet.checkpoints").setLevel(logging.DEBUG)

    partitions = events(args.events, args.seed, args.users)
    build(args.out_dir, args.storage, partitions, args.interval, args.workers,
          args.attempts, args.hold).run()
    print(DONE, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
