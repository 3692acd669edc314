"""The test broker itself (scripts/kafka): records go in and come back out, and
transactions work, so the Kafka tests can rely on it.

A transaction needs the broker's internal topics (``__transaction_state``,
``__consumer_offsets``) to be creatable with one replica; these tests fail if
scripts/kafka ever stops configuring that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

KafkaTopic = Callable[..., Awaitable[str]]  # the kafka_topic fixture (tests/conftest.py)


async def read(bootstrap: str, topic: str, count: int, *, isolation_level: str,
               group_id: str | None = None) -> list[bytes]:
    """The first ``count`` values of ``topic``, from the beginning."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=200)
                values.extend(r.value for records in batches.values() for r in records
                              if r.value is not None)
        if group_id is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def committed_offset(bootstrap: str, group: str, partition: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return offsets[partition].offset


async def test_produce_and_consume_with_a_group(kafka_bootstrap: str,
                                                kafka_topic: KafkaTopic) -> None:
    topic = await kafka_topic(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(30):
            for value in (b"one", b"two", b"three"):
                await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

    group = f"smoke-{uuid.uuid4().hex[:8]}"
    assert await read(kafka_bootstrap, topic, 3, isolation_level="read_committed",
                      group_id=group) == [b"one", b"two", b"three"]
    # the group committed its offset: __consumer_offsets works with one replica
    assert await committed_offset(kafka_bootstrap, group, TopicPartition(topic, 0)) == 3


async def test_a_committed_transaction_is_visible_and_an_aborted_one_is_not(
        kafka_bootstrap: str, kafka_topic: KafkaTopic) -> None:
    topic = await kafka_topic(partitions=2)
    # The transactions also carry offsets of an input, as an exactly-once job's
    # do. That topic must exist: for a missing one the broker answers
    # UNKNOWN_TOPIC_OR_PARTITION, and aiokafka retries that without end.
    source = TopicPartition(await kafka_topic(partitions=1), 0)
    group = f"txn-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"smoke-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with asyncio.timeout(30):
            async with producer.transaction():
                await producer.send(topic, b"committed-1", partition=0)
                await producer.send(topic, b"committed-2", partition=1)
                await producer.send_offsets_to_transaction({source: OffsetAndMetadata(7, "")},
                                                           group)

            await producer.begin_transaction()
            await producer.send(topic, b"aborted-1", partition=0)
            await producer.send(topic, b"aborted-2", partition=1)
            await producer.send_offsets_to_transaction({source: OffsetAndMetadata(9, "")}, group)
            await producer.abort_transaction()

            async with producer.transaction():  # after the aborted records, in both partitions
                await producer.send(topic, b"committed-3", partition=0)
                await producer.send(topic, b"committed-4", partition=1)
    finally:
        await producer.stop()

    committed = await read(kafka_bootstrap, topic, 4, isolation_level="read_committed")
    assert sorted(committed) == [b"committed-1", b"committed-2", b"committed-3", b"committed-4"]
    # the aborted records are in the log; read_committed left them out
    everything = await read(kafka_bootstrap, topic, 6, isolation_level="read_uncommitted")
    assert sorted(everything) == sorted([*committed, b"aborted-1", b"aborted-2"])
    # the group has the committed transaction's offset, not the aborted one's
    assert await committed_offset(kafka_bootstrap, group, source) == 7
