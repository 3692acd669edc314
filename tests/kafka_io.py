"""Reading and writing test topics with plain aiokafka clients, outside streamlet."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def produce(bootstrap: str, topic: str, values: list[bytes], *,
                  partition: int | None = None, timestamps: list[int] | None = None,
                  keys: list[bytes] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, value, partition=partition,
                                key=None if keys is None else keys[i],
                                timestamp_ms=None if timestamps is None else timestamps[i])
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[Any]:
    """``count`` records of ``topic`` from the start, as committed (read_committed)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def _ends(bootstrap: str, topic: str, isolation_level: str
                ) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p)
                      for p in sorted(cluster.partitions_for_topic(topic) or ())]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def settled(bootstrap: str, topic: str) -> None:
    """Wait until no transaction on ``topic`` is open.

    A transaction's commit returns once the coordinator has decided; the
    markers that make it visible reach the partitions a moment later, one by
    one. Until then a ``read_committed`` reader stops short of it (at the last
    stable offset) on some partitions and not on others."""
    for _ in range(600):  # polls the broker, for 30 s at most
        if (await _ends(bootstrap, topic, "read_committed")
                == await _ends(bootstrap, topic, "read_uncommitted")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"a transaction on {topic!r} stays open")


async def consume_all(bootstrap: str, topic: str, *,
                      isolation_level: str = "read_committed",
                      wait_settled: bool = False) -> list[Any]:
    """Every record of ``topic`` a consumer can see now: with ``read_committed``,
    up to the first open transaction (the last stable offset). With
    ``wait_settled``, first wait until no transaction is open."""
    if wait_settled:
        await settled(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    records: list[Any] = []
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p)
                      for p in sorted(cluster.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(60):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records
