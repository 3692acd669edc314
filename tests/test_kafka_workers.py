"""Kafka in and out over worker processes, against the real broker.

Each worker reads its share of the topic's partitions, the keyed state lives
in the worker that owns each key, and each worker's exactly-once sink writes
transactions of its own (transactional.id ``<id>-<worker>``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson
from kafka_io import consume_all, produce

import streamlet as sl

USERS = 23
EVENTS = 4_000


async def counting_job(name: str, events: int, kafka_bootstrap: str, kafka_topic: Any,
                       tmp_path: Path, **settings: Any) -> tuple[sl.Pipeline, str]:
    """``events`` events on 4 partitions, and two workers counting them per user
    into a topic exactly once; the pipeline, and the output topic."""
    source, out = await kafka_topic(partitions=4), await kafka_topic(partitions=2)
    await produce(kafka_bootstrap, source,
                  [orjson.dumps({"user": n % USERS, "n": n}) for n in range(events)],
                  keys=[str(n).encode() for n in range(events)])  # spread over partitions
    pipeline = sl.Pipeline(name, workers=2, batch_size=100, checkpointing=sl.Checkpointing(
        interval=50, storage=f"sqlite:///{tmp_path / 'cp.db'}"), **settings)
    (pipeline.from_kafka(source, bootstrap_servers=kafka_bootstrap, bounded=True)
     .map(lambda e: (e["user"], 1))
     .key_by(lambda pair: pair[0])
     .reduce(lambda a, b: (a[0], a[1] + b[1]))
     .map(lambda pair: {"user": pair[0], "count": pair[1]})
     .to_kafka(out, bootstrap_servers=kafka_bootstrap, key=lambda r: str(r["user"]),
               delivery="exactly-once"))
    return pipeline, out


async def assert_counted_once(kafka_bootstrap: str, out: str, events: int) -> None:
    """Each user's running counts are 1..n, each once: every event counted once."""
    rows = [orjson.loads(r.value)
            for r in await consume_all(kafka_bootstrap, out, wait_settled=True)]
    assert len(rows) == events  # one running count per event: none lost, none twice
    per_user: dict[int, list[int]] = {}
    for row in rows:
        per_user.setdefault(row["user"], []).append(row["count"])
    assert sorted(per_user) == list(range(USERS))
    for user, counts in per_user.items():
        assert sorted(counts) == list(range(1, len(range(user, events, USERS)) + 1)), user


async def test_two_workers_count_a_topic_into_a_topic_exactly_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    pipeline, out = await counting_job("kafka-workers", EVENTS, kafka_bootstrap, kafka_topic,
                                       tmp_path)
    result = await pipeline.run_async()
    assert result.checkpoints
    names = " ".join(result.channels)
    assert "[worker 0]" in names and "[worker 1]" in names
    await assert_counted_once(kafka_bootstrap, out, EVENTS)


async def test_a_killed_worker_restarts_and_the_topic_still_counts_each_event_once(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    """SIGKILL worker 1 after the first checkpoint completed: the restart fences
    its producer (aborting its open transaction) and resumes every worker from
    that checkpoint; read_committed consumers see each running count once."""
    events = 60_000
    pipeline, out = await counting_job(
        "kafka-workers-killed", events, kafka_bootstrap, kafka_topic, tmp_path,
        restart_strategy=sl.RestartStrategy.fixed_delay(attempts=3, delay=0))
    job = asyncio.ensure_future(pipeline.run_async())
    while pipeline.status()["checkpoints_completed"] < 1:  # a condition, not a time
        assert not job.done(), job.exception()
        await asyncio.sleep(0.005)
    os.kill(pipeline.status()["workers"][1]["pid"], signal.SIGKILL)
    result = await job
    assert result.restarts == 1 and result.restored_from is not None
    await assert_counted_once(kafka_bootstrap, out, events)
