"""Page views per user and minute, over worker processes (docs/scaling.md).

The input is eight partitions of page views, like a Kafka topic with eight
partitions; each worker reads its share of them. Views are counted per user
in one-minute event-time windows, and the counts are written exactly once
to part files. Checkpoints go to ``.streamlet/page-views.db``, so a run
that stops resumes where it stopped, on any number of workers::

    python examples/page_views.py --workers 4 --stop-after 1.5   # stops itself
    python examples/page_views.py --workers 2                    # resumes, ends
    python examples/page_views.py --fresh --workers 3            # from scratch

or, without the options, ``streamlet run --workers 2 examples/page_views.py:pipeline``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import streamlet as sl

PARTITIONS = 8
VIEWS_PER_PARTITION = 250_000
USERS = 20_000
START = 1_700_000_000_000  # ms: the first view's event time
STATE = Path(".streamlet")
OUT = Path("out/page-views")


def page_views(partition: int, count: int = VIEWS_PER_PARTITION) -> Iterator[dict[str, Any]]:
    """One partition's views, in event-time order (a view every 8 ms per partition)."""
    rng = random.Random(partition)
    for i in range(count):
        yield {"user": rng.randrange(USERS), "page": rng.randrange(500),
               "ts": START + i * 8 + partition}


def minute_row(result: Any) -> dict[str, int]:
    return {"user": result.key, "minute": result.window.start, "views": result.value}


pipeline = sl.Pipeline(
    "page-views",
    checkpointing=sl.Checkpointing(interval=timedelta(seconds=1),
                                   storage=f"sqlite:///{STATE / 'page-views.db'}"),
)
(pipeline.from_partitions([page_views(p) for p in range(PARTITIONS)], name="views")
    .assign_timestamps(lambda view: view["ts"],
                       sl.WatermarkStrategy.bounded_out_of_orderness(timedelta(seconds=5)),
                       name="event-time")
    .key_by(lambda view: view["user"], name="by-user")
    .window(sl.windows.Tumbling(timedelta(minutes=1)))
    .aggregate(sl.agg.count(), name="views-per-minute")
    .map(minute_row, name="to-row")
    .to_files(OUT, name="minute-files"))


def committed_views() -> int:
    return sum(json.loads(line)["views"] for part in OUT.glob("part-*")
               for line in part.read_text().splitlines())


async def run(workers: int, stop_after: float | None) -> sl.JobResult:
    pipeline.with_workers(workers)
    job = asyncio.ensure_future(pipeline.run_async())
    if stop_after is not None:
        done, _ = await asyncio.wait({job}, timeout=stop_after)  # a redeploy, say
        if not done:
            pipeline.stop()  # stop reading, take a final checkpoint, commit
    return await job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="stop gracefully after this long, as a redeploy would")
    parser.add_argument("--fresh", action="store_true",
                        help="forget earlier runs: their checkpoints and output")
    args = parser.parse_args()
    if args.fresh:
        (STATE / "page-views.db").unlink(missing_ok=True)
        shutil.rmtree(OUT, ignore_errors=True)
    began = time.perf_counter()
    result = asyncio.run(run(args.workers, args.stop_after))
    seconds = time.perf_counter() - began
    resumed = ("from the start" if result.restored_from is None
               else f"resumed from checkpoint {result.restored_from}")
    print(f"{args.workers} workers, {resumed}, {seconds:.1f} s, "
          f"{len(result.checkpoints)} checkpoints")
    print(f"views counted in committed files: {committed_views():,} of "
          f"{PARTITIONS * VIEWS_PER_PARTITION:,}")


if __name__ == "__main__":
    main()
