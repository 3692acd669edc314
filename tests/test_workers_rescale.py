"""Parallel jobs across savepoints and worker counts, and the memory a
shuffle holds.

**Rescale.** A keyed event-time window count over six partitions runs on 4
workers until every worker's reader has read the first ``FIRST`` records of
each of its partitions and stopped there (``GatedPartitions``: it waits for a
release file, reading nothing, while checkpoints go on); the test takes a
savepoint and cancels the job. The job resumes from the savepoint on 2
workers, reads up to ``SECOND``, is savepointed and cancelled again, and
resumes on 3 workers to its end. The windows ``[6000, 7000)`` and ``[14000,
15000)`` straddle the savepoints, so their counts are right only if the
window contents moved with their key groups to other workers (and the
files they are committed in say which worker fired them). The committed
output must equal, row for row, the counts computed by brute force (what an
uninterrupted run commits).

The test waits for conditions (a reader's marker file), never for time.

**Memory bound.** A shuffle into a slow consumer over 2 workers: every
channel in every process (the local ones and those the shuffle's pumps fill
from the other worker) holds at most ``channel_capacity`` batches of at most
``batch_size`` records, and the slow consumer really did make its channels
fill up (backpressure reached across the processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

import streamlet as sl
from streamlet.connectors.collections import PartitionsReader
from streamlet.core.batch import Batch
from streamlet.core.source import Source, SourceReader
from streamlet.state.checkpoint_storage import open_storage
from streamlet.state.keys import key_group, worker_for_key_group
from streamlet.state.snapshots import loads

PARTITIONS = 6
RECORDS = 20_000  # per partition; record i has timestamp i
USERS = 40
BATCH = 100
WINDOW_MS = 1_000
FIRST, SECOND = 6_500, 14_500
"""Where the readers stop for the savepoints (multiples of ``BATCH``): the
windows [6000, 7000) and [14000, 15000) are read partly before, partly after."""
JOB = "rescale"


def partitions() -> list[list[tuple[int, int]]]:
    rng = random.Random(7)
    return [[(rng.randrange(USERS), i) for i in range(RECORDS)] for _ in range(PARTITIONS)]


def oracle() -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for partition in partitions():
        for user, timestamp in partition:
            window = (user, timestamp - timestamp % WINDOW_MS)
            counts[window] = counts.get(window, 0) + 1
    return counts


class GatedPartitions(Source):
    """``from_partitions``, except that each reader stops once all its partitions
    have given ``gates[k]`` records, writes ``paused-<k>-<subtask>`` into
    ``directory`` and reads on only when ``release-<k>`` exists there. Its
    partitions are read round robin a batch at a time, so they all stop at
    exactly ``gates[k]``. A stopped reader holds nothing up: the source task
    sends barriers while a read is pending."""

    def __init__(self, data: list[list[Any]], directory: Path, gates: list[int]) -> None:
        self.data = data
        self.directory = directory
        self.gates = gates

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        source = self

        class Reader(PartitionsReader):
            subtask = 0

            def assign(self, subtask: int, parallelism: int) -> bool:
                self.subtask = subtask
                return super().assign(subtask, parallelism)

            async def next_batch(self) -> Batch | None:
                left = [n for p, n in self.position().items() if n < len(source.data[p])]
                for stage, gate in enumerate(source.gates):
                    release = source.directory / f"release-{stage}"
                    if left and min(left) >= gate and not release.exists():
                        assert max(left) == gate, "the partitions went out of step"
                        (source.directory / f"paused-{stage}-{self.subtask}").touch()
                        # the test's go-ahead, from another process: no Event reaches here
                        while not release.exists():  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
                return await super().next_batch()

        return Reader(name, self.data, batch_size)


def rescale_pipeline(tmp_path: Path, workers: int) -> sl.Pipeline:
    p = sl.Pipeline(JOB, workers=workers, batch_size=BATCH,
                    checkpointing=sl.Checkpointing(
                        interval=3_600_000, storage=f"sqlite:///{tmp_path / 'checkpoints.db'}"))
    (p.from_source(GatedPartitions(partitions(), tmp_path, [FIRST, SECOND]), name="events")
     .assign_timestamps(lambda e: e[1], sl.WatermarkStrategy.bounded_out_of_orderness(0),
                        name="stamp")
     .key_by(lambda e: e[0], name="by_user")
     .window(sl.windows.Tumbling(WINDOW_MS)).aggregate(sl.agg.count(), name="counts")
     .map(lambda r: [r.key, r.window.start, r.value], name="rows")
     .to_files(tmp_path / "out", name="files"))
    return p


async def savepoint_when_paused(pipeline: sl.Pipeline, directory: Path, stage: int,
                                workers: int, from_checkpoint: int | None) -> int:
    """Run until every worker's reader stopped at gate ``stage``; take a savepoint;
    cancel the job (what it did after the savepoint is not committed). The id."""
    run = asyncio.ensure_future(pipeline.run_async(from_checkpoint=from_checkpoint))
    try:
        markers = [directory / f"paused-{stage}-{w}" for w in range(workers)]
        while not all(m.exists() for m in markers):  # a condition, not a timing
            assert not run.done(), run.result()
            await asyncio.sleep(0.01)
        return await pipeline.savepoint()
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


def rows_by_worker(out: Path) -> dict[tuple[int, int], tuple[int, int]]:
    """(user, window start) -> (count, subtask of the file it was committed in)."""
    rows: dict[tuple[int, int], tuple[int, int]] = {}
    for path in sorted(out.glob("part-*")):
        subtask = int(path.name.split("-")[1])
        for line in path.read_bytes().splitlines():
            user, start, count = json.loads(line)
            assert (user, start) not in rows, f"row for {(user, start)} committed twice"
            rows[(user, start)] = (count, subtask)
    return rows


def owner(user: int, workers: int) -> int:
    return worker_for_key_group(key_group(user), workers)


@pytest.mark.slow
async def test_savepoints_move_windows_from_4_to_2_to_3_workers_exactly_once(
        tmp_path: Path) -> None:
    first = await savepoint_when_paused(rescale_pipeline(tmp_path, 4), tmp_path, 0, 4, None)
    (tmp_path / "release-0").touch()
    second = await savepoint_when_paused(rescale_pipeline(tmp_path, 2), tmp_path, 1, 2,
                                         first)
    (tmp_path / "release-1").touch()
    last = rescale_pipeline(tmp_path, 3)
    result = await last.run_async(from_checkpoint=second)
    assert result.restored_from == second

    with open_storage(f"sqlite:///{tmp_path / 'checkpoints.db'}") as storage:
        kinds = {info.checkpoint_id: info.kind for info in storage.list(JOB)}
        snapshots = [storage.read(JOB, first), storage.read(JOB, second)]
    assert kinds[first] == kinds[second] == "savepoint"
    for snapshot, workers, gate in zip(snapshots, (4, 2), (FIRST, SECOND), strict=True):
        # every reader's position is at its gate, and the windows were in the state
        positions: dict[int, int] = {}
        for name, state in snapshot.operators.items():
            if name.partition("@")[0] == "events":
                positions.update(loads(state.meta))
        assert positions == dict.fromkeys(range(PARTITIONS), gate)
        assert any(name.startswith("counts@") for name in snapshot.operators), workers
        assert f"counts@{workers}" not in snapshot.operators

    rows = rows_by_worker(tmp_path / "out")
    assert {window: count for window, (count, _) in rows.items()} == oracle()
    # The windows that straddle a savepoint were counted in part by the workers
    # that owned their keys before it, and fired by the worker that owns them
    # after it (the run after the savepoint, or the next one: watermarks are
    # periodic), which for many keys is another: their state moved.
    for start, before, after in ((6_000, 4, (2, 3)), (14_000, 2, (3,))):
        moved = 0
        for user in range(USERS):
            _, subtask = rows[(user, start)]
            assert subtask in {owner(user, n) for n in after}, (user, start, subtask)
            moved += owner(user, before) != subtask
        assert moved >= USERS // 4, (start, moved)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []


async def test_a_slow_consumer_keeps_every_channel_of_every_worker_within_its_bound() -> None:
    batch, capacity = 64, 4

    def slow(row: tuple[int, int]) -> tuple[int, int]:
        total = 0
        for i in range(300):  # a little CPU work per record: slower than the producers
            total += i * row[1]
        return row[0], total % 7

    p = sl.Pipeline("bounded", workers=2, batch_size=batch, channel_capacity=capacity)
    (p.from_partitions([[(i % 97, i) for i in range(p0, 40_000, 4)] for p0 in range(4)],
                       name="rows")
     .key_by(lambda r: r[0], name="by_key")
     .map(slow, name="slow")
     .sink(lambda r: None, name="nothing"))
    result = await p.run_async()
    channels = result.channels
    assert {name.rpartition(" [")[2] for name in channels} == {"worker 0]", "worker 1]"}
    remote = [name for name in channels if " from worker " in name]
    assert len(remote) == 2, sorted(channels)  # the shuffle's pump in each worker
    for name, stats in channels.items():
        assert stats.capacity == capacity, name
        assert stats.max_buffered <= capacity, (name, stats)
        assert stats.max_buffered_records <= capacity * batch, (name, stats)
    # the slow map's inputs filled up, both the local ones and those the pumps feed
    shuffled = {name: stats for name, stats in channels.items() if "->slow" in name}
    assert len(shuffled) == 4, sorted(channels)
    assert all(stats.max_buffered == capacity for stats in shuffled.values()), shuffled
    assert sum(stats.records_sent for stats in shuffled.values()) == 40_000
