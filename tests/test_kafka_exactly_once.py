"""``to_kafka(delivery="exactly-once")`` against a real broker.

Output is one Kafka transaction per checkpoint: invisible to ``read_committed``
consumers until its checkpoint completes, then visible once. The two crashes
that matter are reproduced in one process here: the checkpoint is durable but
the transaction was not committed (the restore must send its records again),
and the transaction was committed but the job died before it could note it
(the restore must not). ``test_kafka_crash.py`` kills a real process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka_io import consume_all

import streamlet as sl
from streamlet.connectors.kafka_exactly_once import ExactlyOnceKafkaSink
from streamlet.testing import TestSource, start


def pipeline(name: str, tmp_path: Path, out: str, bootstrap: str,
             source: TestSource) -> sl.Pipeline:
    p = sl.Pipeline(name, checkpointing=sl.Checkpointing(
        interval=3_600_000, storage=f"sqlite:///{tmp_path / 'checkpoints.db'}"))
    p.from_source(source, name="numbers").map(lambda n: {"n": n}).to_kafka(
        out, bootstrap_servers=bootstrap, key=lambda r: r["n"], delivery="exactly-once",
        name="out")
    return p


async def committed_values(bootstrap: str, topic: str, *, settled: bool = True) -> list[int]:
    """What a read_committed consumer reads, once the transactions have settled."""
    records = await consume_all(bootstrap, topic, wait_settled=settled)
    return sorted(orjson.loads(r.value)["n"] for r in records)


async def restart_and_finish(name: str, tmp_path: Path, out: str, bootstrap: str) -> None:
    """The next attempt: restored from checkpoint 1, it reads 20..29 and ends."""
    again = TestSource()
    async with start(pipeline(name, tmp_path, out, bootstrap, again), again) as job:
        again.add_all(list(range(20, 30)))
        again.end()
        await job.finish()
        assert job.restored_from == 1


async def test_output_shows_when_its_checkpoint_completes_and_only_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    out = await kafka_topic(partitions=3)
    source = TestSource()
    async with start(pipeline("eos-visible", tmp_path, out, kafka_bootstrap, source),
                     source) as job:
        source.add_all(list(range(10)))
        await job.settle()
        await job.checkpoint()
        source.add_all(list(range(10, 15)))
        await job.settle()
        # the first ten are committed (the commit follows the checkpoint on the
        # sink's task); the last five are in the open transaction
        for _ in range(100):
            if await committed_values(kafka_bootstrap, out, settled=False) == list(range(10)):
                break
        assert await committed_values(kafka_bootstrap, out, settled=False) == list(range(10))
        uncommitted = await consume_all(kafka_bootstrap, out,
                                        isolation_level="read_uncommitted")
        assert len(uncommitted) >= 10
        source.end()
        await job.finish()
    assert await committed_values(kafka_bootstrap, out) == list(range(15))


async def test_a_restore_sends_again_a_transaction_the_crash_left_uncommitted(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash falls after the checkpoint is durable, before the Kafka commit:
    that transaction is aborted when the next attempt starts its producer, and
    the checkpoint's copy of its records goes out again."""
    out = await kafka_topic(partitions=2)
    crashed: list[AIOKafkaProducer] = []

    async def never_commits(self: ExactlyOnceKafkaSink, checkpoint_id: int) -> None:
        return None

    async def dies(self: ExactlyOnceKafkaSink) -> None:  # as SIGKILL: nothing aborted
        if self.producer is not None:
            crashed.append(self.producer)
            self.producer = None

    with monkeypatch.context() as patch:
        patch.setattr(ExactlyOnceKafkaSink, "notify_checkpoint_complete", never_commits)
        patch.setattr(ExactlyOnceKafkaSink, "close", dies)
        first = TestSource()
        async with start(pipeline("eos-uncommitted", tmp_path, out, kafka_bootstrap, first),
                         first) as job:
            first.add_all(list(range(20)))
            await job.settle()
            assert await job.checkpoint() == 1
            first.add_all(list(range(20, 25)))  # after the checkpoint: replayed
            await job.settle()
            job.task.cancel()
    assert await committed_values(kafka_bootstrap, out, settled=False) == []

    await restart_and_finish("eos-uncommitted", tmp_path, out, kafka_bootstrap)
    assert await committed_values(kafka_bootstrap, out) == list(range(30))
    for producer in crashed:  # fenced by the restart
        await producer.stop()


async def test_a_restore_does_not_repeat_a_transaction_committed_before_the_crash(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint holds its transaction as pre-committed; Kafka committed it,
    then the job died. The marker committed with the transaction says so."""
    out = await kafka_topic(partitions=2)
    first = TestSource()
    with monkeypatch.context() as patch:
        async def dies(self: ExactlyOnceKafkaSink) -> None:
            if self.producer is not None:
                await self.producer.stop()
                self.producer = None
        patch.setattr(ExactlyOnceKafkaSink, "close", dies)
        async with start(pipeline("eos-committed", tmp_path, out, kafka_bootstrap, first),
                         first) as job:
            first.add_all(list(range(20)))
            await job.settle()
            assert await job.checkpoint() == 1
            for _ in range(100):
                if await committed_values(kafka_bootstrap, out, settled=False) == list(range(20)):
                    break
            first.add_all(list(range(20, 25)))
            await job.settle()
            job.task.cancel()
    assert await committed_values(kafka_bootstrap, out, settled=False) == list(range(20))

    await restart_and_finish("eos-committed", tmp_path, out, kafka_bootstrap)
    assert await committed_values(kafka_bootstrap, out) == list(range(30))


async def test_a_bounded_topic_to_topic_job_writes_each_record_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    source_topic, out = await kafka_topic(partitions=3), await kafka_topic(partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(3_000):
            await producer.send(source_topic, orjson.dumps({"n": n}), key=str(n).encode())
        await producer.flush()
    finally:
        await producer.stop()
    p = sl.Pipeline("eos-topics", batch_size=100, checkpointing=sl.Checkpointing(
        interval=20, storage=f"sqlite:///{tmp_path / 'checkpoints.db'}"))
    p.from_kafka(source_topic, bootstrap_servers=kafka_bootstrap, bounded=True).to_kafka(
        out, bootstrap_servers=kafka_bootstrap, delivery="exactly-once")
    result = await p.run_async()
    assert len(result.checkpoints) >= 1
    assert await committed_values(kafka_bootstrap, out) == list(range(3_000))


def test_delivery_must_be_one_of_the_two() -> None:
    p = sl.Pipeline("eos-args")
    with pytest.raises(sl.StreamletConfigError, match="at-least-once' or 'exactly-once"):
        p.from_iterable([1]).to_kafka("t", bootstrap_servers="x", delivery="exactly_once")
    with pytest.raises(sl.StreamletConfigError, match="transactional_id"):
        p.from_iterable([1]).to_kafka("t", bootstrap_servers="x", transactional_id="a")
