"""The job that ``tests/test_kafka_crash.py`` kills and
``tests/test_kafka_broker_restart.py`` runs through a broker outage.

Topic to topic: the JSON events ``{"user": u, "n": i}`` of a bounded Kafka
topic, counted per user in tumbling event-time windows of one second (the
Kafka timestamp is the event time, with per-partition watermarks), each count
written as ``{"user": u, "window": start, "count": c}`` (key: the user) by
``to_kafka(delivery="exactly-once")``, with a checkpoint every few tens of
milliseconds in SQLite. Every run with the same arguments is the same job, so
a restarted process continues the job its killed predecessor was running.

The checkpoint log (``streamlet.checkpoints`` at DEBUG) and the Kafka log
(``streamlet.kafka`` at DEBUG: the sink's "committed the transaction of
checkpoint N") go to stderr one line at a time: the parent reads them to time
its kills on real events instead of sleeping. The job adds a line when it
reads the last event of a partition (``n >= events - partitions``: the test
topic puts event ``n`` in partition ``n % partitions``), and one when it is
done.

    python tests/kafka_crash_job.py BOOTSTRAP IN_TOPIC OUT_TOPIC STORAGE_URL --job NAME
                                    --events N [--partitions P] [--interval MS]

The parents import the rest: the input, what the job must write from it,
and the command that starts it (``tests/killing.py`` runs it and kills it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from kafka_io import consume_all

import streamlet as sl

WINDOW_MS = 1_000
DISORDER_MS = 100
LAST_EVENT = "INFO last event of partition {} read"
DONE = "INFO job done"
SOURCE = "events"  # the source's name: its position is in the checkpoints under it
SINK = "out"
BATCH_BYTES = 1 << 20
"""The input goes out in batches of up to 1 MB (the broker's default maximum)."""


# -- the input, and what the job must write ------------------------------------------------

def event_users(count: int, seed: int, users: int) -> list[int]:
    """The user of each event ``n``: the same list for the same arguments."""
    bits = random.Random(seed).getrandbits
    return [bits(16) % users for _ in range(count)]


async def produce_events(bootstrap: str, topic: str, users: list[int], partitions: int,
                         base_ms: int) -> None:
    """Event ``n`` into partition ``n % partitions``, keyed by its user, with the Kafka
    timestamp ``base_ms + n``: rising within each partition, so no event is ever late.

    One batch builder per partition, filled without an await per record, and
    sent whole: a million events take seconds, not minutes."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_batch_size=BATCH_BYTES, max_request_size=BATCH_BYTES + 1024,
                                linger_ms=0)
    await producer.start()
    try:
        builders = [producer.create_batch() for _ in range(partitions)]
        sent: list[asyncio.Future[Any]] = []
        for n, user in enumerate(users):
            partition = n % partitions
            key, value = str(user).encode(), orjson.dumps({"user": user, "n": n})
            if builders[partition].append(timestamp=base_ms + n, key=key, value=value) is None:
                sent.append(await producer.send_batch(builders[partition], topic,
                                                      partition=partition))
                builders[partition] = producer.create_batch()
                builders[partition].append(timestamp=base_ms + n, key=key, value=value)
        for partition, builder in enumerate(builders):
            if builder.record_count():
                sent.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def expected_rows(users: list[int], base_ms: int) -> Counter[tuple[str, int, int]]:
    """What the job must write, brute force: ``(user, window start, count)`` for
    every user and window with events, each once."""
    counts = Counter((str(user), (base_ms + n) // WINDOW_MS * WINDOW_MS)
                     for n, user in enumerate(users))
    return Counter((user, window, count) for (user, window), count in counts.items())


async def committed_rows(bootstrap: str, topic: str) -> list[tuple[str, int, int]]:
    """Every record of the output topic a ``read_committed`` consumer reads, once no
    transaction is open, as ``(user, window start, count)``; its key must be the user."""
    rows = []
    for record in await consume_all(bootstrap, topic, wait_settled=True):
        row = orjson.loads(record.value)
        assert record.key == row["user"].encode(), record
        rows.append((row["user"], row["window"], row["count"]))
    return rows


def differences(rows: list[tuple[str, int, int]], expected: Counter[tuple[str, int, int]]
                ) -> str | None:
    """What is wrong with the records read back, in a few words; None if they are
    exactly the expected ones, each once."""
    got = Counter(rows)
    twice = [(user, window) for (user, window), n in
             Counter((user, window) for user, window, _ in rows).items() if n > 1]
    missing, extra = expected - got, got - expected
    if not (twice or missing or extra):
        return None
    return (f"{len(rows)} records read back, {sum(expected.values())} expected: "
            f"{len(twice)} windows written more than once (e.g. {twice[:3]}), "
            f"{sum(missing.values())} records missing (e.g. {list(missing)[:3]}), "
            f"{sum(extra.values())} not expected (e.g. {list(extra)[:3]})")


# -- running the job in a subprocess (the parent's side) ---------------------------------

JOB_SCRIPT = Path(__file__)


def command(bootstrap: str, in_topic: str, out_topic: str, storage: str, job: str,
            events: int, partitions: int, interval_ms: int) -> list[str]:
    return [sys.executable, str(JOB_SCRIPT), bootstrap, in_topic, out_topic, storage,
            "--job", job, "--events", str(events), "--partitions", str(partitions),
            "--interval", str(interval_ms)]


# -- the job -------------------------------------------------------------------------------


def build(bootstrap: str, in_topic: str, out_topic: str, storage: str, job: str,
          events: int, partitions: int, interval_ms: int) -> sl.Pipeline:
    last = events - partitions

    def user(event: dict[str, Any]) -> str:
        # Every event passes here once: the place to say that a partition's
        # last one was read (for the kills aimed at the job's final checkpoints).
        n: int = event["n"]
        if n >= last:
            print(LAST_EVENT.format(n % partitions), file=sys.stderr, flush=True)
        return str(event["user"])

    p = sl.Pipeline(job, batch_size=1_000, checkpointing=sl.Checkpointing(
        interval=interval_ms, storage=storage))
    (p.from_kafka(in_topic, bootstrap_servers=bootstrap, group_id=f"{job}-source",
                  bounded=True, name=SOURCE)
     .with_watermarks(sl.WatermarkStrategy.bounded_out_of_orderness(DISORDER_MS))
     .key_by(user, name="by_user")
     .window(sl.windows.Tumbling(WINDOW_MS)).aggregate(sl.agg.count(), name="counts")
     .map(lambda r: {"user": r.key, "window": r.window.start, "count": r.value}, name="rows")
     .to_kafka(out_topic, bootstrap_servers=bootstrap, key=lambda row: row["user"],
               delivery="exactly-once", name=SINK))
    return p


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("in_topic")
    parser.add_argument("out_topic")
    parser.add_argument("storage")
    parser.add_argument("--job", required=True, help="the pipeline's name")
    parser.add_argument("--events", type=int, required=True, help="events in the input")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--interval", type=int, default=50, help="checkpoint interval, ms")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)  # flushes after every line
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    for name in ("streamlet.checkpoints", "streamlet.kafka"):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)

    build(args.bootstrap, args.in_topic, args.out_topic, args.storage, args.job, args.events,
          args.partitions, args.interval).run()
    print(DONE, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
