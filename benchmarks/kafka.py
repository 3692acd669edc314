"""K1: Kafka topic -> parse JSON -> keyed 1-second tumbling count -> Kafka topic.

    python -m benchmarks.kafka [--events N] [--repeat R] [--bootstrap HOST:PORT]

Against a real broker: ``--bootstrap`` (or ``STREAMLET_KAFKA_BOOTSTRAP``), or
else one this benchmark starts with ``scripts/kafka`` in its own directory
and stops at the end. ``--events`` JSON events (``{"user": u, "amount": a}``,
100 users, Kafka timestamps ten per millisecond, so 100 one-second windows
per user) are written once to a 4-partition topic. Then, best of
``--repeat``, interleaved, each reading the whole topic from the start:

- the floor: a plain aiokafka loop doing the same work by hand: ``getmany``,
  ``orjson.loads``, a dict of counts per (user, second), each second's
  counts sent with ``send`` once every partition is past it, a final
  ``flush``;
- streamlet at-least-once: ``from_kafka(bounded=True)`` -> ``with_watermarks``
  -> ``key_by`` -> ``Tumbling(1 s)`` count -> ``to_kafka``, checkpointing
  every second to SQLite;
- streamlet exactly-once: the same with ``delivery="exactly-once"``.

Each run writes to a topic of its own; its output is checked (the number
of records, and the counts add up to the events). Reported: events/s, and
streamlet's ratio to the floor (targets: at-least-once >= 0.6x,
exactly-once >= 0.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import streamlet as sl

USERS = 100
PER_MS = 10  # events per millisecond of event time
PARTITIONS = 4
PHASE_S = 300  # no run of 1M events takes a tenth of that
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    directory = tempfile.mkdtemp(prefix="k1-kafka-")
    env = {**os.environ, "STREAMLET_KAFKA_DIR": directory, "STREAMLET_KAFKA_PORT": ""}
    script = str(ROOT / "scripts" / "kafka")
    subprocess.run([script, "fetch"], check=True, env=env)
    started = subprocess.run([script, "start"], check=True, env=env, capture_output=True,
                             text=True)
    try:
        yield started.stdout.strip().removeprefix("KAFKA_BOOTSTRAP=")
    finally:
        subprocess.run([script, "stop"], check=False, env=env)


async def create_topic(bootstrap: str, partitions: int) -> str:
    name = f"k1-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        for _ in range(200):  # until every partition has a leader
            [topic] = await admin.describe_topics([name])
            if not topic["error_code"] and all(p["leader"] >= 0 for p in topic["partitions"]):
                return name
            await asyncio.sleep(0.05)
        raise RuntimeError(f"topic {name} has no leaders")
    finally:
        await admin.close()


async def produce_input(bootstrap: str, topic: str, events: int) -> None:
    """The events, one batch per partition at a time (partition = user % 4, so
    each partition's timestamps only grow)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        builders = {p: producer.create_batch() for p in range(PARTITIONS)}
        futures = []
        for i in range(events):
            user = i % USERS
            partition = user % PARTITIONS
            value = orjson.dumps({"user": f"u{user}", "amount": i % 97})
            builder = builders[partition]
            if builder.append(key=None, value=value, timestamp=i // PER_MS) is None:
                futures.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[partition] = producer.create_batch()
                builder.append(key=None, value=value, timestamp=i // PER_MS)
        for partition, builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def plain_loop(bootstrap: str, source: str, out: str) -> int:
    """The floor: what a careful programmer writes by hand with aiokafka."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    sent = 0
    try:
        partitions = [TopicPartition(source, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        seen = dict.fromkeys(partitions, -1)  # latest timestamp per partition
        done = {tp for tp, end in ends.items() if end == 0}
        emitted = -1  # windows up to this second are sent
        loads = orjson.loads
        while len(done) < len(partitions):
            for tp, records in (await consumer.getmany(timeout_ms=100,
                                                       max_records=1024)).items():
                for record in records:
                    counts[record.timestamp // 1000][loads(record.value)["user"]] += 1
                seen[tp] = records[-1].timestamp
                if records[-1].offset + 1 >= ends[tp]:
                    done.add(tp)
            closed = min(seen[tp] for tp in partitions if tp not in done) // 1000 - 1 \
                if len(done) < len(partitions) else max(counts, default=-1)
            while emitted < closed:
                emitted += 1
                for user, count in counts.pop(emitted, {}).items():
                    await producer.send(out, orjson.dumps(
                        {"user": user, "window": emitted * 1000, "count": count}),
                        key=user.encode(), timestamp_ms=emitted * 1000 + 999)
                    sent += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return sent


def streamlet_job(bootstrap: str, source: str, out: str, delivery: str,
                  storage: str) -> sl.Pipeline:
    p = sl.Pipeline(f"k1-{uuid.uuid4().hex[:8]}", checkpointing=sl.Checkpointing(
        interval=1_000, storage=storage))
    (p.from_kafka(source, bootstrap_servers=bootstrap, bounded=True)
     .with_watermarks(sl.WatermarkStrategy.for_monotonous_timestamps())
     .key_by(lambda e: e["user"])
     .window(sl.windows.Tumbling(1_000)).aggregate(sl.agg.count())
     .map(lambda r: {"user": r.key, "window": r.window.start, "count": r.value})
     .to_kafka(out, bootstrap_servers=bootstrap, key=lambda r: r["user"], delivery=delivery))
    return p


async def read_counts(bootstrap: str, topic: str) -> tuple[int, int]:
    """Records in ``topic`` as read_committed, and the sum of their counts."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    records = total = 0
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += len(batch)
                total += sum(orjson.loads(r.value)["count"] for r in batch)
    finally:
        await consumer.stop()
    return records, total


async def check_output(bootstrap: str, topic: str, events: int) -> int:
    """The number of output records, once their counts add up to the events (a
    transaction's commit markers reach the partitions a moment after it returns)."""
    for _ in range(100):
        records, total = await read_counts(bootstrap, topic)
        if total == events:
            return records
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic}: the counts add up to {total}, not {events}")


@asynccontextmanager
async def phase(what: str) -> AsyncIterator[None]:
    """A run that hangs says which one it was, instead of hanging the benchmark."""
    try:
        async with asyncio.timeout(PHASE_S):
            yield
    except TimeoutError:
        raise RuntimeError(f"{what} did not finish in {PHASE_S} s") from None


async def main_async(args: argparse.Namespace, bootstrap: str) -> None:
    source = await create_topic(bootstrap, PARTITIONS)
    print(f"writing {args.events:,} events to {source} ...", flush=True)
    await produce_input(bootstrap, source, args.events)
    results: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeat):
        out = await create_topic(bootstrap, PARTITIONS)
        began = time.perf_counter()
        async with phase("the plain loop"):
            sent = await plain_loop(bootstrap, source, out)
        results["plain"].append(time.perf_counter() - began)
        assert await check_output(bootstrap, out, args.events) == sent
        for delivery in ("at-least-once", "exactly-once"):
            out = await create_topic(bootstrap, PARTITIONS)
            with tempfile.TemporaryDirectory(prefix="k1-") as directory:
                job = streamlet_job(bootstrap, source, out, delivery,
                                    f"sqlite:///{Path(directory) / 'c.db'}")
                began = time.perf_counter()
                async with phase(f"streamlet {delivery}"):
                    await job.run_async()
                results[delivery].append(time.perf_counter() - began)
            assert await check_output(bootstrap, out, args.events) == sent
    best = {name: min(times) for name, times in results.items()}
    floor = args.events / best["plain"]
    print(f"K1, {args.events:,} events, {USERS} users, {PARTITIONS} partitions, "
          f"best of {args.repeat}:")
    print(f"  plain aiokafka loop     {floor:>12,.0f} ev/s")
    for delivery, target in (("at-least-once", 0.6), ("exactly-once", 0.5)):
        rate = args.events / best[delivery]
        ratio = rate / floor
        print(f"  streamlet {delivery:<13} {rate:>12,.0f} ev/s   ratio {ratio:.2f}x  "
              f"target >={target}x {'ok' if ratio >= target else 'MISS'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("STREAMLET_KAFKA_BOOTSTRAP"))
    args = parser.parse_args(argv)
    with broker(args.bootstrap) as bootstrap:
        asyncio.run(main_async(args, bootstrap))


if __name__ == "__main__":
    main()
