"""Checkpoints inside one process: barriers, snapshots, restore, the file sink.

Each test runs a real pipeline against a real SQLite (or directory)
checkpoint storage in ``tmp_path``, stops it part way (a checkpoint, then a
cancel or a failure), starts the same pipeline again and checks that it
resumed where the checkpoint was: state, timers, positions and committed
output. Processing time is a ``ManualClock``; checkpoints are taken by hand
(``RunningJob.checkpoint()``) or by the clock, which a map function
advances as records pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import streamlet as sl
from streamlet.core.batch import Batch
from streamlet.core.channels import Channel, InputGate
from streamlet.core.control import END_OF_INPUT, Barrier
from streamlet.state.checkpoint_storage import open_storage
from streamlet.testing import ManualClock, TestSource, start

MONO = sl.WatermarkStrategy.for_monotonous_timestamps()


def committed(directory: Path) -> list[Any]:
    """The records of the visible part files, in order: what a reader sees."""
    rows: list[Any] = []
    for path in sorted(directory.glob("part-*")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*"))


def storage(tmp_path: Path, kind: str = "sqlite") -> str:
    return f"sqlite:///{tmp_path / 'checkpoints.db'}" if kind == "sqlite" else (
        f"file://{tmp_path / 'checkpoints'}")


def kinds_in_storage(tmp_path: Path, job: str) -> dict[int, str]:
    with open_storage(storage(tmp_path)) as store:
        return {info.checkpoint_id: info.kind for info in store.list(job)}


def counting_windows(tmp_path: Path, source: sl.Stream, size: int = 10) -> sl.Collected:
    counts = (source.assign_timestamps(lambda r: r[1], MONO, name="stamp")
              .key_by(lambda r: r[0], name="by_key")
              .window(sl.windows.Tumbling(size)).aggregate(sl.agg.count(), name="counts"))
    rows = counts.map(lambda r: [r.key, r.window.start, r.value], name="rows")
    rows.to_files(tmp_path / "out", name="files")
    return counts.collect(name="seen")


RECORDS = [("a", 1), ("b", 2), ("a", 5), ("a", 12), ("b", 15), ("a", 25), ("b", 31)]
EXPECTED = [["a", 0, 2], ["b", 0, 1], ["a", 10, 1], ["b", 10, 1], ["a", 20, 1], ["b", 30, 1]]


@pytest.mark.parametrize("kind", ["sqlite", "file"])
async def test_a_restored_job_resumes_window_state_and_commits_exactly_once(
        kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streamlet.checkpoints")
    config = sl.Checkpointing(interval=1_000, storage=storage(tmp_path, kind))
    first = TestSource()
    p = sl.Pipeline("windows", batch_size=2, clock=ManualClock(0), checkpointing=config)
    seen = counting_windows(tmp_path, p.from_source(first, name="source"))
    async with start(p, first) as job:
        for record in RECORDS[:4]:
            first.add(record)
        await job.settle()
        assert await job.checkpoint() == 1
        assert committed(tmp_path / "out") == [["a", 0, 2], ["b", 0, 1]]
        first.add(RECORDS[4])  # after the checkpoint: lost with the crash, replayed
        first.add(RECORDS[5])
        await job.settle()
        assert len(seen) == 4  # [10, 20) fired, but its part file is not committed
        assert committed(tmp_path / "out") == [["a", 0, 2], ["b", 0, 1]]
        assert hidden(tmp_path / "out")
        job.task.cancel()

    again = TestSource()
    p = sl.Pipeline("windows", batch_size=2, clock=ManualClock(0), checkpointing=config)
    seen = counting_windows(tmp_path, p.from_source(again, name="source"))
    async with start(p, again) as job:
        for record in RECORDS[4:]:
            again.add(record)
        again.end()
        await job.finish()
        assert job.restored_from == 1
    assert [[r.key, r.window.start, r.value] for r in seen] == EXPECTED[2:]
    assert committed(tmp_path / "out") == EXPECTED
    assert hidden(tmp_path / "out") == []
    assert "restored from checkpoint 1" in caplog.text


def test_from_iterable_resumes_after_a_failure_with_output_exactly_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The clock moves one ms per record, so a checkpoint starts every 8 records
    # (between batches of 4). The first run fails at record 30, once a checkpoint
    # has completed; the second, on the same records, resumes from the last
    # complete checkpoint and commits what the failure-free run commits.
    caplog.set_level(logging.INFO, "streamlet.checkpoints")
    records = [(f"k{i % 3}", i) for i in range(60)]

    def run(fail_at: int | None, out: Path) -> None:
        clock = ManualClock(0)
        p = sl.Pipeline("resume", batch_size=4, clock=clock, checkpointing=sl.Checkpointing(
            interval=8, storage=f"sqlite:///{out / 'c.db'}"))

        def tick(record: tuple[str, int]) -> tuple[str, int]:
            clock.advance(1)
            return record

        async def crash(record: tuple[str, int]) -> tuple[str, int]:
            if record[1] == fail_at:  # once a checkpoint has committed part files
                while not list((out / "out").glob("part-*")):  # noqa: ASYNC110  # no event to wait on
                    await asyncio.sleep(0.001)
                raise RuntimeError("crash")
            return record
        source = p.from_iterable(records).map(tick).map(crash)
        (source.key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1]))
         .to_files(out / "out"))
        p.run()

    run(None, tmp_path / "clean")
    with pytest.raises(sl.UserFunctionError, match="crash"):
        run(30, tmp_path / "crashed")
    assert len(committed(tmp_path / "crashed" / "out")) < 30
    run(None, tmp_path / "crashed")
    assert committed(tmp_path / "crashed" / "out") == committed(tmp_path / "clean" / "out")
    assert len(committed(tmp_path / "clean" / "out")) == 60
    assert "job 'resume' restored from checkpoint" in caplog.text


class CountThenAlert(sl.KeyedProcessFunction):
    """Counts a key's records; 10 ms of event time after each, emits the count."""

    count = sl.ValueState("count", default=0)

    def process(self, value: Any, ctx: sl.Context) -> None:
        self.count.update(self.count.value() + 1)
        ctx.timers.register_event_time(ctx.timestamp + 10)

    def on_timer(self, timestamp: int, ctx: sl.Context) -> Any:
        return (ctx.key, timestamp, self.count.value())


async def test_keyed_state_and_timers_of_a_process_function_come_back(tmp_path: Path) -> None:
    config = sl.Checkpointing(interval=1_000, storage=storage(tmp_path))

    def build(source: TestSource) -> tuple[sl.Pipeline, sl.Collected]:
        p = sl.Pipeline("alerts", batch_size=1, clock=ManualClock(0), checkpointing=config)
        out = (p.from_source(source, name="source")
               .assign_timestamps(lambda r: r[1], MONO).key_by(lambda r: r[0])
               .process(CountThenAlert(), name="alerts").collect())
        return p, out

    first = TestSource()
    p, out = build(first)
    async with start(p, first) as job:
        for record in [("a", 1), ("b", 2), ("a", 3)]:
            first.add(record)
        await job.settle()
        await job.checkpoint()
        job.task.cancel()
    assert list(out) == []
    again = TestSource()
    p, out = build(again)
    async with start(p, again) as job:
        again.add(("a", 20))
        again.end()
        await job.finish()
    # the timers set before the checkpoint fire after the restore, in their order,
    # once the record at 20 (a's third) has moved the watermark to 19
    assert list(out) == [("a", 11, 3), ("b", 12, 1), ("a", 13, 3), ("a", 30, 3)]


async def test_a_union_aligns_its_barriers(tmp_path: Path) -> None:
    # Records of the faster input that come after its barrier wait until the
    # other input's barrier has arrived: none of them is in the snapshot.
    config = sl.Checkpointing(interval=1_000, storage=storage(tmp_path))

    def build(left: TestSource, right: TestSource) -> tuple[sl.Pipeline, sl.Collected]:
        p = sl.Pipeline("union", batch_size=1, clock=ManualClock(0), checkpointing=config)
        both = p.from_source(left, name="left").union(p.from_source(right, name="right"))
        sums = both.key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1]),
                                                  name="sums").collect()
        return p, sums

    left, right = TestSource(), TestSource()
    p, sums = build(left, right)
    async with start(p, left, right) as job:
        left.add(("x", 1))
        right.add(("x", 10))
        await job.settle()
        checkpoint = asyncio.ensure_future(job.checkpoint())
        await job.settle()
        await checkpoint
        job.task.cancel()
    left2, right2 = TestSource(), TestSource()
    p, sums = build(left2, right2)
    async with start(p, left2, right2) as job:
        left2.add(("x", 100))
        left2.end()
        right2.end()
        await job.finish()
    assert list(sums) == [("x", 111)]


def test_state_for_an_operator_the_job_no_longer_has_is_refused_unless_allowed(
        tmp_path: Path) -> None:
    url = storage(tmp_path)

    def run(name: str, allow: bool = False) -> list[Any]:
        p = sl.Pipeline("renamed", checkpointing=sl.Checkpointing(
            storage=url, allow_non_restored_state=allow))
        out = (p.from_iterable([("a", 1), ("a", 2)]).key_by(lambda r: r[0])
               .reduce(lambda a, b: (a[0], a[1] + b[1]), name=name).collect())
        p.run()
        return list(out)

    assert run("sums") == [("a", 1), ("a", 3)]
    with pytest.raises(sl.CheckpointError, match=r"\['sums'\].*name=|allow_non_restored_state"):
        run("totals")
    assert run("totals", allow=True) == []  # the source resumed at its end: nothing new


def test_a_source_that_cannot_seek_says_so_on_restore(tmp_path: Path) -> None:
    url = storage(tmp_path)

    async def records() -> Any:
        for i in range(3):
            yield i

    def run() -> list[Any]:
        p = sl.Pipeline("unseekable", checkpointing=sl.Checkpointing(storage=url))
        out = p.from_async_iterable(records(), name="events").collect()
        p.run()
        return list(out)

    assert run() == [0, 1, 2]
    with pytest.raises(sl.CheckpointError, match="'events' cannot resume"):
        run()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: sl.Checkpointing(interval=0), "interval must be at least 1 ms"),
    (lambda: sl.Checkpointing(retain=0), "retain=...\\) must be a positive int"),
    (lambda: sl.Checkpointing(interval="1s"), "checkpoint interval must be"),
    (lambda: sl.Pipeline(checkpointing=True), "checkpointing must be sl.Checkpointing"),
])
def test_bad_checkpoint_settings_are_config_errors(make: Callable[[], Any],
                                                    message: str) -> None:
    with pytest.raises(sl.StreamletConfigError, match=message):
        make()


def test_a_finished_job_started_again_replays_nothing(tmp_path: Path) -> None:
    def run() -> list[Any]:
        p = sl.Pipeline("done", checkpointing=sl.Checkpointing(storage=storage(tmp_path)))
        out = p.from_iterable(range(5)).map(lambda v: v * 2).collect()
        p.from_iterable(range(3)).to_files(tmp_path / "out")
        p.run()
        return list(out)

    assert run() == [0, 2, 4, 6, 8]
    assert committed(tmp_path / "out") == [0, 1, 2]
    assert run() == []
    assert committed(tmp_path / "out") == [0, 1, 2]


async def test_the_gate_holds_an_input_that_passed_the_barrier_until_all_have() -> None:
    a, b, c = Channel("a", 10), Channel("b", 10), Channel("c", 10)
    gate = InputGate([a, b, c], random.Random(0))
    await a.send(Barrier(1))
    await a.send(Batch(["a after"]))
    await b.send(Batch(["b before"]))
    await c.send(END_OF_INPUT)  # an input that ended does not hold the barrier back
    assert (await gate.receive()).values == ["b before"]
    await b.send(Barrier(1))
    await b.send(Batch(["b after"]))
    item = await gate.receive()
    assert isinstance(item, Barrier) and item.checkpoint_id == 1
    after = {(await gate.receive()).values[0], (await gate.receive()).values[0]}
    assert after == {"a after", "b after"}


async def test_a_savepoint_restores_into_a_changed_pipeline_and_outlives_pruning(
        tmp_path: Path) -> None:
    config = sl.Checkpointing(interval=1_000, storage=storage(tmp_path), retain=1)

    def build(source: TestSource, extra: bool) -> tuple[sl.Pipeline, sl.Collected]:
        p = sl.Pipeline("savepoints", batch_size=1, clock=ManualClock(0), checkpointing=config)
        stream = p.from_source(source, name="source")
        if extra:  # version 2 of the job: one more stateless operator, new name
            stream = stream.map(lambda r: (r[0], r[1] * 10), name="scale")
        sums = stream.key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1]),
                                                     name="sums").collect()
        return p, sums

    first = TestSource()
    p, sums = build(first, extra=False)
    async with start(p, first) as job:
        first.add(("a", 1))
        await job.settle()
        savepoint = await p.savepoint()
        first.add(("a", 2))
        await job.settle()
        await job.checkpoint()
        await job.checkpoint()  # retain=1: the checkpoints go, the savepoint stays
        job.task.cancel()
    assert list(sums) == [("a", 1), ("a", 3)]
    listed = kinds_in_storage(tmp_path, "savepoints")
    assert listed[savepoint] == "savepoint" and list(listed.values()).count("checkpoint") == 1

    again = TestSource()
    p, sums = build(again, extra=True)
    task = asyncio.ensure_future(p.run_async(from_checkpoint=savepoint))
    again.add(("a", 5))
    again.end()
    await task
    assert list(sums) == [("a", 51)]  # 1 from the savepoint, then 5 scaled


async def test_a_savepoint_asked_for_during_a_checkpoint_follows_it(tmp_path: Path) -> None:
    """Not 'still in progress': the savepoint waits for the checkpoint in flight."""
    config = sl.Checkpointing(interval=1_000, storage=storage(tmp_path))
    source = TestSource()
    p = sl.Pipeline("queued", clock=ManualClock(0), checkpointing=config)
    p.from_source(source, name="source").key_by(lambda r: r).reduce(lambda a, b: a).collect()
    async with start(p, source) as job:
        source.add("a")
        await job.settle()
        checkpoint = asyncio.ensure_future(job.checkpoint())
        await asyncio.sleep(0)  # the checkpoint has started, not completed
        assert job.job.coordinator is not None and job.job.coordinator.pending is not None
        savepoint = asyncio.ensure_future(p.savepoint())
        await job.settle()
        assert await savepoint == await checkpoint + 1
        job.task.cancel()
    assert kinds_in_storage(tmp_path, "queued")[await savepoint] == "savepoint"


def test_from_checkpoint_needs_checkpointing_and_an_existing_id(tmp_path: Path) -> None:
    p = sl.Pipeline("nothing")
    p.from_iterable([1]).collect()
    with pytest.raises(sl.StreamletConfigError, match="no checkpoint storage"):
        p.run(from_checkpoint=3)
    p = sl.Pipeline("nothing", checkpointing=sl.Checkpointing(storage=storage(tmp_path)))
    p.from_iterable([1]).collect()
    with pytest.raises(sl.CheckpointError, match="3"):
        p.run(from_checkpoint=3)


async def test_savepoint_of_a_pipeline_that_is_not_running_is_an_error() -> None:
    p = sl.Pipeline("idle")
    with pytest.raises(sl.StreamletError, match="not running"):
        await p.savepoint()


class CountToThree(sl.KeyedProcessFunction):
    """Counts a key's records; at three, emits and forgets the key (a delete)."""

    count = sl.ValueState("count", default=0)

    def process(self, value: Any, ctx: sl.Context) -> Any:
        n = self.count.value() + 1
        if n == 3:
            self.count.clear()
        else:
            self.count.update(n)
        return (ctx.key, value[1], n)


@pytest.mark.parametrize("kind", ["sqlite", "file"])
async def test_incremental_checkpoints_of_sqlite_state_restore_whole_after_many_increments(
        kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # State in SQLite: after a whole first checkpoint, each one holds only the keys
    # written or deleted since the last (a checkpoint every 10 records, each
    # touching 10 of 100 keys). The crash comes after more than FULL_EVERY
    # increments, so the restore merges a chain that restarted with a whole copy,
    # and pruning (retain=2) has kept the chain's bases.
    caplog.set_level(logging.INFO, "streamlet.checkpoints")
    records = [(f"k{(i * 7) % 100}", i) for i in range(400)]  # each key's 3rd: a delete

    def build(source: sl.Stream, out: Path) -> None:
        (source.key_by(lambda r: r[0]).process(CountToThree(), name="counts")
         .to_files(out / "out"))

    def pipeline(out: Path) -> sl.Pipeline:
        return sl.Pipeline("incremental", batch_size=5, clock=ManualClock(0),
                           state_backend=sl.SQLiteState(out / "state", cache_size=8),
                           checkpointing=sl.Checkpointing(storage=storage(out, kind), retain=2))

    clean = pipeline(tmp_path / "clean")
    build(clean.from_iterable(records, name="source"), tmp_path / "clean")
    await clean.run_async()

    crashed = tmp_path / "crashed"
    first = TestSource()
    p = pipeline(crashed)
    build(p.from_source(first, name="source"), crashed)
    async with start(p, first) as job:
        for chunk in range(25):
            first.add_all(records[chunk * 10:(chunk + 1) * 10])
            await job.settle()
            await job.checkpoint()
        first.add_all(records[250:257])  # after the last checkpoint: replayed
        await job.settle()
        job.task.cancel()
    with open_storage(storage(crashed, kind)) as store:
        infos = store.list("incremental")
    assert len(infos) > 2 and any(info.bases for info in infos)  # incremental ones
    sizes = [(info.operator_sizes["counts"], bool(info.bases)) for info in infos]
    whole = min(size for size, incremental in sizes if not incremental)
    assert all(size < whole / 2 for size, incremental in sizes if incremental), sizes
    ids = {info.checkpoint_id for info in infos}
    assert all(base in ids for info in infos for base in info.bases.values())

    again = TestSource()
    p = pipeline(crashed)
    build(p.from_source(again, name="source"), crashed)
    async with start(p, again) as job:
        again.add_all(records[250:])
        again.end()
        await job.finish()
        assert job.restored_from == 25
    assert committed(crashed / "out") == committed(tmp_path / "clean" / "out")
    assert len(committed(crashed / "out")) == 400


@pytest.mark.parametrize("restart", ["older", "none"])
async def test_starting_behind_committed_output_commits_each_record_once(
        restart: str, tmp_path: Path) -> None:
    # The first run commits part 0 (records 0-19, checkpoint 1), part 1 (20-29,
    # checkpoint 2) and part 2 (30-39, the final checkpoint). Started again from
    # checkpoint 1 (or, its storage gone, from nothing), the replay cuts its output
    # differently: part 1 now holds 20-39. The old part 2 must go, or records
    # 30-39 would be there twice.
    records = list(range(40))

    def pipeline() -> tuple[sl.Pipeline, TestSource]:
        p = sl.Pipeline("replay", batch_size=4, clock=ManualClock(0),
                        checkpointing=sl.Checkpointing(storage=storage(tmp_path)))
        source = TestSource()
        p.from_source(source, name="source").to_files(tmp_path / "out")
        return p, source

    p, source = pipeline()
    async with start(p, source) as job:
        source.add_all(records[:20])
        await job.settle()
        assert await job.checkpoint() == 1
        source.add_all(records[20:30])
        await job.settle()
        await job.checkpoint()
        source.add_all(records[30:])
        source.end()
        await job.finish()
    assert len(list((tmp_path / "out").glob("part-*"))) == 3
    p, source = pipeline()
    if restart == "older":
        source.add_all(records[20:])
        source.end()
        assert (await p.run_async(from_checkpoint=1)).restored_from == 1
    else:
        (tmp_path / "checkpoints.db").unlink()
        source.add_all(records)
        source.end()
        await p.run_async()
    assert committed(tmp_path / "out") == records
    assert hidden(tmp_path / "out") == []


async def test_a_stopped_job_keeps_its_open_windows_for_the_next_run(tmp_path: Path) -> None:
    # stop() is not the end of the input: no end-of-input watermark, so the open
    # window does not fire; it is in the final checkpoint and fires in the next
    # run, with the records of both runs.
    config = sl.Checkpointing(interval=3_600_000, storage=storage(tmp_path))

    def build() -> tuple[sl.Pipeline, TestSource, sl.Collected]:
        p = sl.Pipeline("stopped", batch_size=1, clock=ManualClock(0), checkpointing=config)
        source = TestSource()
        counts = (p.from_source(source, name="source")
                  .assign_timestamps(lambda r: r[1], MONO).key_by(lambda r: r[0])
                  .window(sl.windows.Tumbling(10)).aggregate(sl.agg.count(), name="counts")
                  .collect())
        return p, source, counts

    p, source, counts = build()
    async with start(p, source) as job:
        source.add(("a", 1))
        source.add(("a", 2))
        await job.settle()
        p.stop()
        await job.finish()
        assert job.job.coordinator is not None and job.job.coordinator.completed
    assert list(counts) == []
    p, source, counts = build()
    async with start(p, source) as job:
        source.add(("a", 3))
        source.end()
        await job.finish()
        assert job.restored_from is not None
    assert [(r.window.start, r.value) for r in counts] == [(0, 3)]


def test_stop_needs_a_running_job_with_checkpointing() -> None:
    p = sl.Pipeline("idle")
    with pytest.raises(sl.StreamletError, match="not running"):
        p.stop()
