"""The Kafka source and sink against a real broker (``scripts/kafka``).

Every test makes its own topics with unique names on the broker the test
command started (``kafka_bootstrap``), so tests do not see each other's
records.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka_io import consume, produce

import streamlet as sl
from streamlet.errors import ConnectorError
from streamlet.testing import ManualClock, start


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110  # records arrive from the broker
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(("value_format", "values", "wire"), [
    ("json", [{"a": 1}, [1, 2], "x", None], [b'{"a":1}', b"[1,2]", b'"x"', b"null"]),
    ("str", ["héllo", "2"], ["héllo".encode(), b"2"]),
    ("bytes", [b"\x00\x01", b""], [b"\x00\x01", b""]),
])
async def test_every_format_round_trips(kafka_bootstrap: str, kafka_topic: Any,
                                        value_format: str, values: list[Any],
                                        wire: list[bytes]) -> None:
    out_topic = await kafka_topic()
    p = sl.Pipeline("formats")
    p.from_iterable(values).to_kafka(out_topic, bootstrap_servers=kafka_bootstrap,
                                     value_format=value_format)
    await p.run_async()
    assert [r.value for r in await consume(kafka_bootstrap, out_topic, len(values))] == wire

    back = sl.Pipeline("formats-back")
    read = back.from_kafka(out_topic, bootstrap_servers=kafka_bootstrap, bounded=True,
                           value_format=value_format).collect()
    await back.run_async()
    assert list(read) == values


async def test_a_bounded_source_reads_every_partition_to_its_end_with_kafka_timestamps(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    name = await kafka_topic(partitions=3)
    for partition in range(3):
        await produce(kafka_bootstrap, name, [orjson.dumps([partition, i]) for i in range(50)],
                      partition=partition, timestamps=[1_000 + i for i in range(50)])

    class Stamp(sl.ProcessFunction):
        def process(self, value: Any, ctx: sl.Context) -> Any:
            return (tuple(value), ctx.timestamp)

    p = sl.Pipeline("bounded", batch_size=16)
    out = p.from_kafka(name, bootstrap_servers=kafka_bootstrap, bounded=True).process(
        Stamp()).collect()
    await p.run_async()
    assert sorted(out) == sorted(((partition, i), 1_000 + i)
                                 for partition in range(3) for i in range(50))
    by_partition: dict[int, list[int]] = {}
    for (partition, i), _ in out:
        by_partition.setdefault(partition, []).append(i)
    assert all(seen == list(range(50)) for seen in by_partition.values())  # in order


async def test_completed_checkpoints_commit_their_offsets_to_the_group(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    name = await kafka_topic(partitions=2)
    for partition in range(2):
        await produce(kafka_bootstrap, name, [b"1"] * (10 + partition), partition=partition)
    p = sl.Pipeline("monitored", checkpointing=sl.Checkpointing(
        interval=3_600_000, storage=f"sqlite:///{tmp_path / 'c.db'}"))
    p.from_kafka(name, bootstrap_servers=kafka_bootstrap, group_id="monitored",
                 bounded=True).collect()
    await p.run_async()  # its final checkpoint commits the end offsets
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id="monitored",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        assert [await consumer.committed(TopicPartition(name, partition))
                for partition in range(2)] == [10, 11]
    finally:
        await consumer.stop()


async def test_records_that_cannot_be_read_go_to_the_dead_letter_topic_with_headers(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    name, dead = await kafka_topic(), await kafka_topic()
    values = [b'{"n": 1}', b"{not json", b'{"n": 2}', b"\xff\xfe", b'{"n": 3}']
    await produce(kafka_bootstrap, name, values, partition=0)
    p = sl.Pipeline("poison")
    out = p.from_kafka(name, bootstrap_servers=kafka_bootstrap, bounded=True,
                       dead_letter_topic=dead).collect()
    await p.run_async()
    assert list(out) == [{"n": 1}, {"n": 2}, {"n": 3}]
    letters = await consume(kafka_bootstrap, dead, 2)
    assert [r.value for r in letters] == [b"{not json", b"\xff\xfe"]
    headers = [dict(r.headers) for r in letters]
    assert [(h["streamlet.topic"], h["streamlet.partition"], h["streamlet.offset"])
            for h in headers] == [(name.encode(), b"0", b"1"), (name.encode(), b"0", b"3")]
    assert all(h["streamlet.error"].startswith(b"JSONDecodeError") for h in headers)


async def test_without_a_dead_letter_topic_a_bad_record_fails_the_job_naming_its_offset(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    name = await kafka_topic()
    await produce(kafka_bootstrap, name, [b"1", b"{bad"], partition=0)
    p = sl.Pipeline("poison-fails")
    p.from_kafka(name, bootstrap_servers=kafka_bootstrap, bounded=True).collect()
    with pytest.raises(sl.SourceError, match=rf"topic '{name}' partition 0 offset 1"):
        await p.run_async()


async def test_a_restored_job_resumes_at_its_checkpointed_offsets(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    # Sums per key over an unbounded topic; a savepoint after the first 20
    # records, a cancel, 10 more records, a restart: the sums go on from the
    # checkpoint, no record counted twice or lost.
    name = await kafka_topic(partitions=2)
    config = sl.Checkpointing(interval=3_600_000, storage=f"sqlite:///{tmp_path / 'c.db'}")

    def build() -> tuple[sl.Pipeline, sl.Collected]:
        p = sl.Pipeline("resume", checkpointing=config)
        sums = (p.from_kafka(name, bootstrap_servers=kafka_bootstrap, group_id="resume",
                             name="source")
                .key_by(lambda r: r["k"]).reduce(lambda a, b: {"k": a["k"], "n": a["n"] + b["n"]},
                                                 name="sums")
                .collect())
        return p, sums

    records = [orjson.dumps({"k": i % 2, "n": 1}) for i in range(30)]
    await produce(kafka_bootstrap, name, records[:20], keys=[b"a", b"b"] * 10)
    p, sums = build()
    job = asyncio.ensure_future(p.run_async())
    await until(lambda: len(sums) == 20)
    await p.savepoint()
    job.cancel()
    await asyncio.wait([job])
    await produce(kafka_bootstrap, name, records[20:], keys=[b"a", b"b"] * 5)

    p, sums = build()
    job = asyncio.ensure_future(p.run_async())
    await until(lambda: len(sums) == 10)
    job.cancel()
    await asyncio.wait([job])
    finals = {r["k"]: r["n"] for r in sums}
    assert finals == {0: 15, 1: 15}
    assert len(sums) == 10


async def test_a_lagging_partition_holds_windows_back_and_an_idle_one_does_not(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    """Per-partition watermarks, as in Flink: partition 0 runs ahead, partition 1
    lags, partition 2 never has a record. The 1-second window [0, 1000) fires
    only once partition 1 passes 1000, and partition 2 holds it back only
    until it is idle (processing time from a ManualClock)."""
    topic = await kafka_topic(partitions=3)
    clock = ManualClock()
    seen: list[int] = []

    def note(ts: int) -> int:
        seen.append(ts)
        return ts

    p = sl.Pipeline("partitions", clock=clock)
    fired = (p.from_kafka(topic, bootstrap_servers=kafka_bootstrap)
             .with_watermarks(sl.WatermarkStrategy.for_monotonous_timestamps()
                              .with_idleness(1_000))
             .map(note).key_by(lambda ts: "all")
             .window(sl.windows.Tumbling(1_000)).aggregate(sl.agg.count())
             .map(lambda r: (r.window.start, r.value)).collect())

    async def send(partition: int, timestamps: range) -> None:
        await produce(kafka_bootstrap, topic, [orjson.dumps(ts) for ts in timestamps],
                      partition=partition, timestamps=list(timestamps))

    async with start(p) as job:
        await send(0, range(0, 3_000, 100))
        await send(1, range(0, 1_600, 100))
        await until(lambda: len(seen) == 46)
        await job.settle()
        # partition 2 has no record and is not idle yet: it holds event time back
        # (its first record could be at 0)
        assert list(fired) == []

        clock.advance(1_500)  # every partition idle: none had a record for 1.5 s
        await send(1, range(1_600, 2_000, 100))  # partition 1 is back, still before 2000
        await send(0, range(3_000, 3_200, 100))  # and partition 0, far ahead
        await until(lambda: len(seen) == 52)
        await job.settle()
        # idle partition 2 no longer counts; lagging partition 1 (at 1900) holds
        # [1000, 2000) back although partition 0 is at 3100
        assert list(fired) == [(0, 20)]

        await send(1, range(2_000, 2_200, 100))  # partition 1 catches up
        await until(lambda: len(seen) == 54)
        await job.settle()
        assert list(fired) == [(0, 20), (1_000, 20)]
        job.task.cancel()


async def test_a_thousand_poison_pills_and_rejected_records_reach_dead_letter_topics(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    """Undecodable records go to the source's dead-letter topic, records a user
    function rejects to another one through ``dead_letters().to_kafka``; each
    with headers naming where it was read. Every good record comes out, with
    its Kafka timestamp."""
    source, dead, rejected_topic, out = (await kafka_topic(partitions=2), await kafka_topic(),
                                         await kafka_topic(), await kafka_topic(partitions=2))
    rng = random.Random(6)
    kinds = ["good"] * 9_000 + ["poison"] * 1_000 + ["rejected"] * 500
    rng.shuffle(kinds)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    sent: list[tuple[str, bytes, int, Any]] = []  # kind, value, timestamp, delivery
    try:
        for i, kind in enumerate(kinds):
            value = {"good": orjson.dumps({"n": i}), "rejected": orjson.dumps({"n": -i}),
                     "poison": rng.choice([b"{bad json", b"\xff\xfe", b""])}[kind]
            sent.append((kind, value, 5_000 + i,
                         await producer.send(source, value, partition=i % 2,
                                             timestamp_ms=5_000 + i)))
        await producer.flush()
    finally:
        await producer.stop()
    where: dict[str, list[tuple[bytes, int, int, int]]] = {
        "poison": [], "rejected": [], "good": []}
    for kind, value, ts, delivery in sent:
        meta = delivery.result()
        where[kind].append((value, ts, meta.partition, meta.offset))

    def check(record: dict[str, int]) -> dict[str, int]:
        if record["n"] < 0:
            raise ValueError(f"negative: {record['n']}")
        return record

    p = sl.Pipeline("pills", batch_size=256)
    checked = p.from_kafka(source, bootstrap_servers=kafka_bootstrap, bounded=True,
                           dead_letter_topic=dead).map(check, on_error="dead_letter",
                                                       name="check")
    checked.to_kafka(out, bootstrap_servers=kafka_bootstrap)
    checked.dead_letters().to_kafka(rejected_topic, bootstrap_servers=kafka_bootstrap)
    await p.run_async()

    outputs = await consume(kafka_bootstrap, out, 9_000)
    assert sorted((orjson.loads(r.value)["n"], r.timestamp) for r in outputs) == sorted(
        (orjson.loads(value)["n"], ts) for value, ts, _, _ in where["good"])

    def described(records: list[Any]) -> list[tuple[bytes, int, int, int]]:
        found = []
        for r in records:
            h = dict(r.headers)
            assert h["streamlet.topic"] == source.encode()
            found.append((r.value, r.timestamp, int(h["streamlet.partition"]),
                          int(h["streamlet.offset"])))
        return sorted(found)

    poison = await consume(kafka_bootstrap, dead, 1_000)
    assert described(poison) == sorted(where["poison"])
    rejected = await consume(kafka_bootstrap, rejected_topic, 500)
    assert described(rejected) == sorted(where["rejected"])
    for r in rejected:
        h = dict(r.headers)
        assert h["streamlet.operator"] == b"check"
        assert h["streamlet.error"].startswith(b"ValueError: negative")


async def test_a_user_function_failure_names_the_kafka_offset_of_its_record(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    name = await kafka_topic()
    await produce(kafka_bootstrap, name, [b"1", b"2", b"0", b"4"], partition=0)
    p = sl.Pipeline("offsets")
    p.from_kafka(name, bootstrap_servers=kafka_bootstrap, bounded=True).filter(
        lambda n: n > 1).map(lambda n: 10 // (n - 2), name="divide").collect()
    with pytest.raises(sl.UserFunctionError,
                       match=rf"operator 'divide', topic '{name}' partition 0 offset 1: "
                             "ZeroDivisionError"):
        await p.run_async()


def _nobody_listening() -> str:
    """An address on this machine where no broker is: a port just given up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("side", ["source", "sink", "exactly-once sink"])
async def test_no_broker_at_the_address_fails_naming_who_and_where_and_closes_the_client(
        side: str, caplog: pytest.LogCaptureFixture) -> None:
    servers = _nobody_listening()
    p = sl.Pipeline("nobody-there")
    if side == "source":
        p.from_kafka("t", bootstrap_servers=servers, bounded=True, name="payments").collect()
        who = "source 'payments'"
    else:
        delivery = "exactly-once" if side == "exactly-once sink" else "at-least-once"
        p.from_iterable([1, 2]).to_kafka("t", bootstrap_servers=servers, delivery=delivery,
                                         name="alerts")
        who = "sink 'alerts'"
    with pytest.raises(ConnectorError) as failed:
        await p.run_async()
    message = str(failed.value)
    assert message.startswith(f"{who} could not connect to Kafka at {servers}: "
                              "KafkaConnectionError: Unable to bootstrap"), message
    assert "Check that a broker is running there" in message
    assert isinstance(failed.value, ConnectionError)
    assert not isinstance(failed.value, sl.StreamletConfigError)  # a restart may help
    # the client that failed to start was stopped: collected, it does not complain
    del failed
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
        await asyncio.sleep(0)
    assert "Unclosed" not in caplog.text
