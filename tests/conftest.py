"""Shared test setup."""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Finalise leftovers of earlier jobs here, not in the middle of pytest's reporting.

    A failed job can leave a task whose exception was never retrieved; asyncio
    logs it with a traceback when the task is collected, and on CPython 3.11.7
    that logging, when it lands inside pytest's own ``ast.parse`` of a failure,
    crashes the session with "AST constructor recursion depth mismatch".
    """
    yield
    gc.collect(1)  # the young generations: where a just-finished job's tasks are


# --- Kafka: the broker that scripts/test starts (scripts/kafka) ------------------

KafkaTopic = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of the test broker, from ``STREAMLET_KAFKA_BOOTSTRAP``.

    scripts/test starts a broker with scripts/kafka and sets the variable. Without
    it a Kafka test fails on CI (``CI=true``) and is skipped elsewhere: only a
    machine without Java may run the tests without the broker.
    """
    bootstrap = os.environ.get("STREAMLET_KAFKA_BOOTSTRAP", "")
    if bootstrap:
        return bootstrap
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("STREAMLET_KAFKA_BOOTSTRAP is not set: on CI the Kafka tests need the "
                    "broker that scripts/test starts (scripts/kafka start)", pytrace=False)
    pytest.skip("no Kafka broker: run the tests through scripts/test (needs Java 17)")


@pytest.fixture
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[KafkaTopic]:
    """``await kafka_topic(partitions=1)``: a new, uniquely named topic, deleted after the test.

    It returns once every partition has a leader, so a producer or consumer
    started right after finds the whole topic.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    made: list[str] = []

    async def make(partitions: int = 1, *, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        for error in response.to_object()["topic_errors"]:
            if error["error_code"]:
                raise RuntimeError(f"creating topic {name}: {error}")
        made.append(name)
        async with asyncio.timeout(10):
            while True:
                [topic] = await admin.describe_topics([name])
                if (not topic["error_code"] and len(topic["partitions"]) == partitions
                        and all(p["leader"] >= 0 for p in topic["partitions"])):
                    return name
                await asyncio.sleep(0.05)

    try:
        yield make
    finally:
        try:
            if made:
                await admin.delete_topics(made)
        finally:
            await admin.close()
