"""The job that ``tests/test_crash.py`` runs in a subprocess and kills.

A keyed event-time window count over a deterministic list of events, read by
``from_iterable`` (which resumes by index), written through the exactly-once
file sink, with checkpoints every few milliseconds. Every run with the same
arguments builds the same events, so a restarted process continues the job
its killed predecessor was running.

The checkpoint log (``streamlet.checkpoints`` at DEBUG) goes to stderr one
line at a time: the parent reads it to time its kills on real events ("writing
checkpoint N" is logged as a checkpoint's write starts) instead of sleeping;
the job adds a line when it reads its last event, and one when it is done.

    python tests/crash_job.py OUT_DIR STORAGE_URL [--events N] [--seed S]
                              [--interval MS] [--users U]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Callable

import streamlet as sl

JOB = "crash"
WINDOW_MS = 5_000
DISORDER_MS = 500
"""Timestamps run 2 ms apart plus up to this much jitter: out of order, within the bound."""
LAST_EVENT = "INFO last event read"
DONE = "INFO job done"


def events(count: int, seed: int, users: int) -> list[tuple[int, int]]:
    """``(user, timestamp)`` pairs, the same list for the same arguments."""
    bits = random.Random(seed).getrandbits
    return [(bits(16) % users, i * 2 + bits(16) % DISORDER_MS) for i in range(count)]


def build(out_dir: str, storage: str, records: list[tuple[int, int]],
          interval_ms: int) -> sl.Pipeline:
    last = records[-1]

    def timestamp(event: tuple[int, int]) -> int:
        # The one place that sees every event as it is read: it says when the
        # last one is, so that the parent can kill the job as it ends (its
        # final checkpoint). An identity check costs next to nothing per event.
        if event is last:
            print(LAST_EVENT, file=sys.stderr, flush=True)
        return event[1]

    p = sl.Pipeline(JOB, checkpointing=sl.Checkpointing(interval=interval_ms, storage=storage))
    count_windows(p.from_iterable(records, name="events"), timestamp, out_dir)
    return p


def count_windows(events: sl.Stream, timestamp: Callable[[tuple[int, int]], int],
                  out_dir: str) -> None:
    """Each user's events per tumbling window, counted into part files exactly
    once (also the job of workers_crash_job.py)."""
    (events
     .assign_timestamps(timestamp, sl.WatermarkStrategy.bounded_out_of_orderness(DISORDER_MS),
                        name="stamp")
     .key_by(lambda e: e[0], name="by_user")
     .window(sl.windows.Tumbling(WINDOW_MS)).aggregate(sl.agg.count(), name="counts")
     .map(lambda r: [r.key, r.window.start, r.value], name="rows")
     .to_files(out_dir, name="files"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("storage")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--interval", type=int, default=20, help="checkpoint interval, ms")
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)  # flushes after every line
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("streamlet.checkpoints")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)

    records = events(args.events, args.seed, args.users)
    build(args.out_dir, args.storage, records, args.interval).run()
    print(DONE, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
