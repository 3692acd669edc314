"""Connectors as parallel subtasks: each worker's share of a source, resuming
across a change of worker count, and sinks that several workers run at once.

The readers and operators are driven directly, as the runtime drives each
subtask (``assign``, ``seek``, ``merge_positions``, ``rescale_meta``), against
real files in ``tmp_path``; no worker processes are started.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_io import produce

import streamlet as sl
from streamlet.connectors.collections import PartitionsReader
from streamlet.connectors.files import FileSink, FileTransaction
from streamlet.connectors.kafka import KafkaSource, owns_partition
from streamlet.connectors.kafka_exactly_once import ExactlyOnceKafkaSink
from streamlet.core.batch import Batch
from streamlet.core.mailbox import Mailbox
from streamlet.core.operator import Discard, OperatorContext
from streamlet.core.two_phase import TwoPhaseCommitOperator, TwoPhaseCommitSink
from streamlet.errors import CheckpointError, SourceError
from streamlet.state.snapshots import OperatorState
from streamlet.testing import ManualClock


def gen(values: Iterable[Any]) -> Iterator[Any]:
    yield from values


def partitions() -> list[Iterable[Any]]:
    """Fresh partitions of every kind: lists, a tuple, generators, an empty one."""
    return [list(range(0, 7)), gen(range(100, 111)), (200, 201), [],
            gen(range(300, 305)), list(range(400, 413))]


EXPECTED = [list(p) for p in partitions()]


def drain(reader: PartitionsReader, limit: int | None = None) -> list[Batch]:
    async def run() -> list[Batch]:
        batches: list[Batch] = []
        while limit is None or len(batches) < limit:
            batch = await reader.next_batch()
            if batch is None:
                break
            batches.append(batch)
        return batches
    return asyncio.run(run())


def by_partition(batches: list[Batch]) -> dict[int, list[Any]]:
    read: dict[int, list[Any]] = {}
    for batch in batches:
        read.setdefault(batch.split, []).extend(batch.values)
    return read


# -- from_partitions ------------------------------------------------------------------


def test_three_subtasks_read_every_record_once_with_its_partition_as_split() -> None:
    read: dict[int, list[Any]] = {}
    for subtask in range(3):
        reader = PartitionsReader("parts", partitions(), 3)
        assert reader.assign(subtask, 3)
        batches = drain(reader)
        assert {b.split for b in batches} <= {p for p in range(6) if p % 3 == subtask}
        assert all(len(b.values) <= 3 for b in batches)
        for p, values in by_partition(batches).items():
            assert p not in read
            read[p] = values
    assert [read.get(p, []) for p in range(6)] == EXPECTED


def test_without_assign_one_reader_owns_every_partition() -> None:
    read = by_partition(drain(PartitionsReader("parts", partitions(), 4)))
    assert [read.get(p, []) for p in range(6)] == EXPECTED


def test_a_subtask_without_partitions_reads_nothing() -> None:
    reader = PartitionsReader("parts", [[1], [2]], 10)
    assert not reader.assign(2, 3)
    assert reader.assign(1, 3)
    assert [(b.split, b.values) for b in drain(reader)] == [(1, []), (1, [2])]


def test_every_partition_is_announced_before_any_record_then_read_round_robin() -> None:
    batches = drain(PartitionsReader("parts", partitions(), 3))
    announced = [b.split for b in batches[:5]]
    # the empty list has nothing to hold back; a generator is announced unread
    assert announced == [0, 1, 2, 4, 5]
    assert all(b.values == [] for b in batches[:5])
    assert all(b.values for b in batches[5:])
    assert [b.split for b in batches[5:13]] == [0, 1, 2, 4, 5, 0, 1, 4]


def test_position_seek_and_merge_resume_three_subtasks_on_two() -> None:
    before: dict[int, list[Any]] = {}
    positions = []
    for subtask, batches in ((0, 4), (1, 7), (2, 3)):
        reader = PartitionsReader("parts", partitions(), 2)
        reader.assign(subtask, 3)
        for p, values in by_partition(drain(reader, batches)).items():
            before[p] = values
        positions.append(reader.position())
    assert positions[0] == {0: 6, 3: 0}  # 3 is empty: 1 announcement, 3 batches of 0
    merged = PartitionsReader("parts", partitions(), 2).merge_positions(positions)
    assert merged == {p: len(before.get(p, [])) for p in range(6)}

    after: dict[int, list[Any]] = {}
    for subtask in range(2):
        reader = PartitionsReader("parts", partitions(), 2)
        if subtask == 0:  # either order: the runtime may seek before or after assign
            reader.seek(merged)
            reader.assign(subtask, 2)
        else:
            reader.assign(subtask, 2)
            reader.seek(merged)
        assert reader.position() == {p: merged[p] for p in range(6) if p % 2 == subtask}
        after.update(by_partition(drain(reader)))
        assert reader.position() == {p: len(EXPECTED[p]) for p in range(6) if p % 2 == subtask}
    assert [before.get(p, []) + after.get(p, []) for p in range(6)] == EXPECTED


def test_resume_past_the_end_of_a_partition_is_refused() -> None:
    reader = PartitionsReader("parts", partitions(), 2)
    with pytest.raises(CheckpointError, match="partition 2 after 3 records"):
        reader.seek({2: 3})
    with pytest.raises(CheckpointError, match="only 6 partitions"):
        reader.seek({6: 0})
    short = PartitionsReader("parts", partitions(), 2)
    short.seek({1: 12})
    with pytest.raises(CheckpointError, match="partition 1 after 12 records"):
        drain(short)


def test_a_failing_partition_delivers_what_it_read_then_fails_naming_it() -> None:
    def failing() -> Iterator[int]:
        yield from range(4)
        raise ValueError("disk gone")

    reader = PartitionsReader("parts", [[1, 2], failing()], 3)
    read: list[Batch] = []

    async def run() -> None:
        while (batch := await reader.next_batch()) is not None:
            read.append(batch)
    with pytest.raises(SourceError, match="partition 1, after 4 records: ValueError: disk gone"):
        asyncio.run(run())
    assert by_partition(read) == {0: [1, 2], 1: [0, 1, 2, 3]}


def test_from_partitions_in_a_pipeline() -> None:
    p = sl.Pipeline("parts")
    out = p.from_partitions([[1, 2, 3], gen([4, 5]), []]).map(lambda x: x * 10).collect()
    p.run()
    assert sorted(out) == [10, 20, 30, 40, 50]


# -- Kafka: which partitions a subtask reads ------------------------------------------


def test_each_kafka_partition_belongs_to_exactly_one_subtask() -> None:
    for topic in ("orders", "payments", "t"):
        for parallelism in (1, 2, 3, 5):
            for partition in range(12):
                owners = [s for s in range(parallelism)
                          if owns_partition(topic, partition, s, parallelism)]
                assert len(owners) == 1
            # consecutive partitions go to consecutive subtasks
            firsts = [next(s for s in range(parallelism)
                           if owns_partition(topic, p, s, parallelism))
                      for p in range(parallelism)]
            assert sorted(firsts) == list(range(parallelism))
    # not every topic starts at subtask 0
    assert {next(s for s in range(4) if owns_partition(t, 0, s, 4))
            for t in ("a", "b", "c", "d", "e", "f")} != {0}


def kafka_reader(topic: str = "t", bootstrap: str = "localhost:1", bounded: bool = False
                 ) -> Any:
    source = KafkaSource(topic, bootstrap_servers=bootstrap, group_id=None,
                         value_format="json", key_format=None, start="earliest",
                         bounded=bounded, dead_letter_topic=None, client_options={})
    return source.create_reader("kafka", 10)


async def test_kafka_subtasks_read_each_partition_once(kafka_bootstrap: str,
                                                      kafka_topic: Any) -> None:
    topic = await kafka_topic(partitions=5)
    for p in range(5):
        await produce(kafka_bootstrap, topic, [b"%d" % (100 * p + i) for i in range(3 + p)],
                      partition=p)
    read: dict[int, list[Any]] = {}
    for subtask in range(3):
        reader = kafka_reader(topic, kafka_bootstrap, bounded=True)
        assert reader.assign(subtask, 3)
        try:
            async with asyncio.timeout(30):
                while (batch := await reader.next_batch()) is not None:
                    if batch.values:
                        t, p = batch.split
                        assert owns_partition(t, p, subtask, 3)
                        read.setdefault(p, []).extend(batch.values)
            assert set(reader.position()) == {
                (topic, p) for p in range(5) if owns_partition(topic, p, subtask, 3)}
        finally:
            await reader.close()
    assert read == {p: [100 * p + i for i in range(3 + p)] for p in range(5)}


async def test_a_kafka_subtask_without_partitions_keeps_polling(kafka_bootstrap: str,
                                                              kafka_topic: Any) -> None:
    topic = await kafka_topic(partitions=1)
    idle = next(s for s in range(3) if not owns_partition(topic, 0, s, 3))
    reader = kafka_reader(topic, kafka_bootstrap)
    assert reader.assign(idle, 3)
    try:
        async with asyncio.timeout(10):
            batch = await reader.next_batch()
        assert batch is not None and batch.values == [] and reader.position() == {}
    finally:
        await reader.close()


def test_a_kafka_reader_keeps_only_its_partitions_of_a_restored_position() -> None:
    restored = {("t", p): 10 * p for p in range(6)}
    shares = []
    for subtask in range(3):
        reader = kafka_reader()
        assert reader.assign(subtask, 3)  # unbounded: runs even with no partition yet
        reader.seek(restored)
        shares.append(reader.position())
        assert all(owns_partition("t", p, subtask, 3) for _, p in shares[-1])
    assert kafka_reader().merge_positions(shares) == restored
    alone = kafka_reader()
    alone.seek(restored)
    assert alone.position() == restored


# -- the file sink, several subtasks in one directory ---------------------------------


def context(subtask: int, parallelism: int) -> OperatorContext:
    return OperatorContext(lambda coro, name: None, 128, ManualClock(), Mailbox(),
                           subtask=subtask, parallelism=parallelism)


def file_operator(directory: Path, subtask: int, parallelism: int,
                  meta: bytes | None = None) -> TwoPhaseCommitOperator:
    operator = TwoPhaseCommitOperator("files", FileSink(directory, "jsonl", "files"))
    operator.wire(Discard(), {})
    operator.open(context(subtask, parallelism))
    operator.open_checkpoints(lambda *args: None, 128)
    if meta is not None:
        operator.restore_state(OperatorState(meta, {}), 128)
    return operator


async def write_and_snapshot(operator: TwoPhaseCommitOperator, values: list[Any],
                             checkpoint_id: int) -> bytes:
    await operator.process(Batch(values))
    await operator.prepare_snapshot(checkpoint_id)
    return operator.snapshot_state(checkpoint_id, 128).meta


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def rows(directory: Path) -> list[Any]:
    return sorted(json.loads(line) for path in directory.glob("part-*")
                  for line in path.read_text().splitlines())


async def test_with_two_workers_names_carry_the_subtask(tmp_path: Path) -> None:
    operators = [file_operator(tmp_path, s, 2) for s in range(2)]
    for s, operator in enumerate(operators):
        await write_and_snapshot(operator, [s], 1)
        await write_and_snapshot(operator, [s + 10], 2)
    attempts = [op.sink.attempt for op in operators]  # type: ignore[attr-defined]
    assert names(tmp_path) == sorted(
        f".part-{s}-{attempts[s]}-{n:08d}.inprogress" for s in range(2) for n in range(2))
    for operator in operators:
        await operator.notify_checkpoint_complete(2)
    assert names(tmp_path) == [f"part-{s}-{n:08d}.jsonl" for s in range(2) for n in range(2)]
    assert rows(tmp_path) == [0, 1, 10, 11]


async def test_with_one_worker_names_are_unchanged(tmp_path: Path) -> None:
    operator = file_operator(tmp_path, 0, 1)
    await write_and_snapshot(operator, ["a"], 1)
    assert names(tmp_path) == [f".part-{operator.sink.attempt}-00000000.inprogress"]  # type: ignore[attr-defined]
    await operator.notify_checkpoint_complete(1)
    assert names(tmp_path) == ["part-00000000.jsonl"]


def leftovers(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    for name in (".part-0-aaaaaaaaaaaa-00000003.inprogress",
                 ".part-1-bbbbbbbbbbbb-00000002.inprogress",
                 ".part-2-cccccccccccc-00000001.inprogress",  # a subtask of a bigger run
                 ".part-dddddddddddd-00000004.inprogress",  # a run with one worker
                 "part-0-00000002.jsonl", "part-1-00000001.jsonl", "part-2-00000000.jsonl",
                 "part-00000003.jsonl"):
        (directory / name).write_text('"old"\n')


@pytest.mark.parametrize(("subtask", "removed"), [
    (1, [".part-1-bbbbbbbbbbbb-00000002.inprogress"]),
    (0, [".part-0-aaaaaaaaaaaa-00000003.inprogress",
         ".part-2-cccccccccccc-00000001.inprogress",
         ".part-dddddddddddd-00000004.inprogress"]),
])
def test_clean_up_removes_only_what_is_this_subtasks(tmp_path: Path, subtask: int,
                                                     removed: list[str]) -> None:
    leftovers(tmp_path)
    before = names(tmp_path)
    sink = FileSink(tmp_path, "jsonl", "files")
    sink.open_subtask(subtask, 2)
    sink.restore(5)
    sink.clean_up([])
    assert names(tmp_path) == [n for n in before if n not in removed]


def test_clean_up_keeps_the_restored_transactions_of_any_subtask(tmp_path: Path) -> None:
    leftovers(tmp_path)
    sink = FileSink(tmp_path, "jsonl", "files")
    sink.open_subtask(0, 2)
    sink.restore(5)
    sink.clean_up([FileTransaction(".part-2-cccccccccccc-00000001.inprogress",
                                   "part-2-00000001.jsonl")])
    assert ".part-2-cccccccccccc-00000001.inprogress" in names(tmp_path)


def test_a_subtask_removes_its_part_files_newer_than_its_counter_and_writes_above_the_rest(
        tmp_path: Path) -> None:
    leftovers(tmp_path)
    (tmp_path / "part-1-00000004.jsonl").write_text('"newer"\n')
    sink = FileSink(tmp_path, "jsonl", "files")
    sink.open_subtask(1, 2)
    sink.open()
    sink.restore(3)  # the checkpoint restored had written part-1-0 .. part-1-2
    sink.clean_up([])
    assert "part-1-00000001.jsonl" in names(tmp_path)
    assert "part-1-00000004.jsonl" not in names(tmp_path)
    assert "part-00000003.jsonl" in names(tmp_path)  # subtask 0's to judge
    transaction = sink.begin_transaction()
    sink.close()
    assert transaction.final == "part-1-00000003.jsonl"
    assert not (tmp_path / transaction.final).exists()


def test_file_sink_states_merge_by_max() -> None:
    sink = FileSink("unused", "jsonl", "files")
    assert sink.merge_states([3, None, 7, 2]) == 7
    assert sink.merge_states([]) == 0


# -- rescaling a two-phase-commit sink ------------------------------------------------


class Recording(TwoPhaseCommitSink[str]):
    """Transactions named after the worker count, subtask and a counter; each
    commit is recorded with the subtask that made it."""

    def __init__(self, commits: list[tuple[int, str]]) -> None:
        self.commits = commits
        self.name = ""
        self.subtask = -1
        self.counter = 0

    def open_subtask(self, subtask: int, parallelism: int) -> None:
        self.subtask = subtask
        self.name = f"{parallelism}:{subtask}"

    def begin_transaction(self) -> str:
        self.counter += 1
        return f"{self.name}/{self.counter}"

    def write(self, transaction: str, values: list[Any]) -> None:
        pass

    def commit(self, transaction: str) -> None:
        self.commits.append((self.subtask, transaction))

    def state(self) -> int:
        return self.counter

    def restore(self, state: Any) -> None:
        self.counter = state


def recording(commits: list[tuple[int, str]], subtask: int, parallelism: int,
              metas: list[bytes] | None = None) -> TwoPhaseCommitOperator:
    operator = TwoPhaseCommitOperator("sink", Recording(commits))
    operator.wire(Discard(), {})
    operator.open(context(subtask, parallelism))
    operator.open_checkpoints(lambda *args: None, 128)
    if metas is not None:
        meta = operator.rescale_meta(metas, subtask, parallelism)
        operator.restore_state(OperatorState(meta, {}), 128)
    return operator


async def pre_commit(operators: list[TwoPhaseCommitOperator], count: Callable[[int], int]
                     ) -> tuple[list[bytes], dict[str, int]]:
    """Subtask ``s`` pre-commits ``count(s)`` transactions, one per checkpoint, and
    none completes: each one's meta, and which subtask made each transaction."""
    metas, made = [], {}
    for subtask, operator in enumerate(operators):
        for checkpoint_id in range(1, count(subtask) + 1):
            await operator.process(Batch([checkpoint_id]))
            made[operator.transaction] = subtask
            await operator.prepare_snapshot(checkpoint_id)
        metas.append(operator.snapshot_state(count(subtask), 128).meta)
    return metas, made


async def test_rescaling_4_2_3_commits_every_pending_transaction_exactly_once() -> None:
    commits: list[tuple[int, str]] = []
    four = [recording(commits, s, 4) for s in range(4)]
    metas, made = await pre_commit(four, lambda s: s)  # 0, 1, 2 and 3 pending
    assert commits == [] and len(made) == 6

    two = [recording(commits, s, 2, metas) for s in range(2)]
    assert sorted(t for _, t in commits) == sorted(made)
    assert all(made[t] % 2 == j for j, t in commits)  # old subtask i's commit on i % 2
    assert [op.sink.counter for op in two] == [0, 0]  # type: ignore[attr-defined]
    for operator in two:  # nothing of the old ones is left to commit again
        await operator.notify_checkpoint_complete(99)
    assert len(commits) == 6

    commits.clear()
    metas, made = await pre_commit(two, lambda s: 2 + s)  # 2 and 3 pending
    three = [recording(commits, s, 3, metas) for s in range(3)]
    assert sorted(t for _, t in commits) == sorted(made)
    assert all(made[t] % 3 == j for j, t in commits)
    for operator in three:
        await operator.notify_checkpoint_complete(99)
    assert len(commits) == len(set(commits)) == 5


async def test_rescaled_file_sinks_commit_every_part_once_and_reuse_no_name(
        tmp_path: Path) -> None:
    four = [file_operator(tmp_path, s, 4) for s in range(4)]
    metas = []
    for s, operator in enumerate(four):
        for checkpoint_id in range(1, s + 2):
            meta = await write_and_snapshot(operator, [f"{s}.{checkpoint_id}"], checkpoint_id)
        metas.append(meta)
    for operator in four:
        await operator.close()
    expected = sorted(f"{s}.{c}" for s in range(4) for c in range(1, s + 2))
    assert rows(tmp_path) == []

    two = []
    for s in range(2):
        meta = file_operator(tmp_path, s, 2).rescale_meta(metas, s, 2)
        two.append(file_operator(tmp_path, s, 2, meta))
    assert rows(tmp_path) == expected
    assert [op.sink.next_part for op in two] == [4, 4]  # type: ignore[attr-defined]
    assert not [n for n in names(tmp_path) if n.startswith(".")]

    for s, operator in enumerate(two):
        await operator.process(Batch([f"new{s}"]))
        await operator.end_input()
        await operator.notify_checkpoint_complete(1)  # the final checkpoint
        await operator.close()
    assert rows(tmp_path) == sorted([*expected, "new0", "new1"])
    assert {"part-0-00000004.jsonl", "part-1-00000004.jsonl"} <= set(names(tmp_path))


def test_the_default_merge_keeps_subtask_zeros_state() -> None:
    assert Recording([]).merge_states([3, 9]) == 3
    assert Recording([]).merge_states([]) is None


# -- exactly-once Kafka ----------------------------------------------------------------


def kafka_sink() -> ExactlyOnceKafkaSink:
    return ExactlyOnceKafkaSink("out", "topic", "localhost:1", None, "json", None, "job-tx", {})


def test_each_worker_has_its_own_transactional_id() -> None:
    sinks = []
    for subtask, parallelism in ((0, 1), (0, 3), (2, 3)):
        sink = kafka_sink()
        sink.open(context(subtask, parallelism))
        sinks.append(sink.transactional_id)
    assert sinks == ["job-tx", "job-tx-0", "job-tx-2"]


def test_an_exactly_once_kafka_sink_refuses_a_rescale() -> None:
    with pytest.raises(CheckpointError) as failure:
        kafka_sink().rescale_meta([b"a", b"b", b"c"], 0, 2)
    message = str(failure.value)
    assert "'out'" in message and "3 workers" in message and "now has 2" in message
    assert "restore with the same number of workers, or drain the job first" in message
