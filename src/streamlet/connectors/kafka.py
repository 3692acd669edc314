"""Kafka in and out, on aiokafka: ``pipeline.from_kafka(...)``, ``stream.to_kafka(...)``.

The source assigns itself every partition of its topics (no consumer-group
rebalancing: which records a job has read is in its checkpoints, not in
Kafka) and reads them with ``getmany``, a batch per partition, so that each
partition is a split with its own watermark downstream. Each record's Kafka
timestamp is its event time (``with_watermarks(strategy)`` makes watermarks
from it). The offsets are the source's position in every checkpoint; when a
checkpoint completes they are also committed to Kafka under ``group_id``, for
monitoring tools only. With ``bounded=True`` the source reads up to the end
offsets it finds when it starts, then ends, so the same job runs as a batch
job. New partitions are picked up while running. With ``workers=N`` each
worker's reader takes the partitions ``owns_partition`` gives it, and keeps
running (and looking for new partitions) even when that is none yet.

A record that cannot be deserialized goes to ``dead_letter_topic`` with
headers naming its topic, partition, offset and the error, and the job goes
on; without a dead-letter topic the job fails, naming the record.

The sink builds one aiokafka batch per partition (the key's partition by
Kafka's murmur2, as the Java client picks it) and sends it with one await,
and at every checkpoint barrier (and at the end) waits until everything
sent is acknowledged: at-least-once. ``kafka_exactly_once`` builds the
transactional sink on it. A ``DeadLetter`` record is written with headers
saying where it was read and why it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from streamlet.core.batch import Batch
from streamlet.core.operator import DeadLetter, Operator
from streamlet.core.source import Source, SourceReader
from streamlet.errors import ConnectorError, SourceError, StreamletConfigError, short_repr

log = logging.getLogger("streamlet.kafka")

FORMATS = ("json", "bytes", "str")
Format = str | Callable[[bytes], Any]
_DISCOVER_EVERY = 50  # polls between looks for new partitions
_LAST_COMMIT_S = 5.0  # how long closing waits for the last offsets to reach Kafka
_partitioner = DefaultPartitioner()  # Kafka's murmur2 of the key, as the Java client


def deserializer(fmt: Format | None, what: str) -> Callable[[bytes | None], Any]:
    if fmt is None or fmt == "bytes":
        return lambda data: data
    if fmt == "json":
        return lambda data: None if data is None else orjson.loads(data)
    if fmt == "str":
        return lambda data: None if data is None else data.decode()
    if callable(fmt):
        parse: Callable[[bytes | None], Any] = fmt  # type: ignore[assignment]
        return parse
    raise StreamletConfigError(
        f"{what}={fmt!r}: use one of {', '.join(FORMATS)} or a function of the bytes")


def serializer(fmt: Format | None, what: str) -> Callable[[Any], bytes | None]:
    if fmt == "json":
        return orjson.dumps
    if fmt == "str":
        return lambda value: str(value).encode()
    if fmt is None or fmt == "bytes":
        return lambda value: value
    if callable(fmt):
        return fmt
    raise StreamletConfigError(
        f"{what}={fmt!r}: use one of {', '.join(FORMATS)} or a function returning bytes")


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, who: str,
                       servers: str) -> None:
    """Start an aiokafka client, or stop it again and say who could not reach
    what: a client whose start failed still holds its connections, and would
    only complain about them when it is collected ("Unclosed AIOKafkaConsumer")."""
    try:
        await client.start()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await client.stop()
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, KafkaConnectionError):
            advice = ("Check that a broker is running there and that bootstrap_servers "
                      "names it")
        else:
            advice = "Check bootstrap_servers and the client options given with it"
        detail = str(exc)
        if not detail.startswith(type(exc).__name__):  # aiokafka's often name themselves
            detail = f"{type(exc).__name__}: {detail}"
        raise ConnectorError(
            f"{who} could not connect to Kafka at {servers}: {detail}. "
            f"{advice}; a job with a restart strategy tries again.") from exc


def owns_partition(topic: str, partition: int, subtask: int, parallelism: int) -> bool:
    """Whether subtask ``subtask`` of ``parallelism`` reads ``partition`` of
    ``topic``: consecutive partitions go to consecutive subtasks, from a start
    that depends on the topic (stable across runs and processes), so the
    partitions of several small topics do not all land on subtask 0."""
    return (partition + zlib.crc32(topic.encode())) % parallelism == subtask


class KafkaSource(Source):
    def __init__(self, topics: str | Iterable[str], *, bootstrap_servers: str,
                 group_id: str | None, value_format: Format, key_format: Format | None,
                 start: str | int, bounded: bool, dead_letter_topic: str | None,
                 client_options: dict[str, Any]) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise StreamletConfigError("from_kafka() needs at least one topic")
        if start not in ("earliest", "latest", "committed") and not (
                isinstance(start, int) and not isinstance(start, bool)):
            raise StreamletConfigError(
                f"from_kafka(start={start!r}): use 'earliest', 'latest', 'committed' or a "
                "timestamp in ms")
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.value = deserializer(value_format, "value_format")
        self.key = None if key_format is None else deserializer(key_format, "key_format")
        self.start = start
        self.bounded = bounded
        self.dead_letter_topic = dead_letter_topic
        self.client_options = client_options

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return KafkaReader(self, name, batch_size)


class KafkaReader(SourceReader):
    def __init__(self, source: KafkaSource, name: str, batch_size: int) -> None:
        self.source = source
        self.name = name
        self.batch_size = batch_size
        self.offsets: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self._restored: dict[tuple[str, int], int] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: AIOKafkaProducer | None = None
        # decoded batches not yet handed out, with the offset after each: a
        # partition's position moves only when its batch is handed out, so a
        # checkpoint between two batches never counts records still in here
        self._ready: deque[tuple[Batch, TopicPartition, int]] = deque()
        self._ends: dict[TopicPartition, int] | None = None
        self._polls = 0
        self._handed_out: dict[tuple[str, int], int] = {}
        self._committing: asyncio.Future[None] | None = None  # offsets on their way to Kafka
        self._subtask = 0
        self._parallelism = 1

    def reads_on(self, subtask: int, parallelism: int) -> bool:
        return True  # partitions are found while running: any subtask may get some

    def assign(self, subtask: int, parallelism: int) -> bool:
        """Read only the partitions ``owns_partition`` gives this subtask. True
        even when that is none yet: partitions are found while running."""
        self._subtask = subtask
        self._parallelism = parallelism
        return True

    def _owns(self, topic: str, partition: int) -> bool:
        return self._parallelism == 1 or owns_partition(
            topic, partition, self._subtask, self._parallelism)

    # -- positions ---------------------------------------------------------------------

    def position(self) -> dict[tuple[str, int], int]:
        if self._consumer is None and self._restored is not None:
            # not started yet: still where the restored checkpoint was
            position = {tp: offset for tp, offset in self._restored.items() if self._owns(*tp)}
        else:
            position = {(tp.topic, tp.partition): offset
                        for tp, offset in self.offsets.items()}
        self._handed_out = position
        return position

    def seek(self, position: Any) -> None:
        self._restored = dict(position)

    def merge_positions(self, positions: list[Any]) -> dict[tuple[str, int], int]:
        """Each old subtask read its own partitions: together, all of them."""
        merged: dict[tuple[str, int], int] = {}
        for position in positions:
            if position:
                merged.update(position)
        return merged

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit the offsets of the checkpoint to Kafka, for monitoring tools.

        In the background: the commit waits for the broker (all through an
        outage), and the source task must not, or no barrier would go out
        meanwhile. While one commit is in flight, later ones are skipped; the
        next checkpoint commits newer offsets anyway."""
        consumer = self._consumer
        if consumer is None or self.source.group_id is None or not self._handed_out:
            return
        if self._committing is not None and not self._committing.done():
            return
        offsets = {TopicPartition(t, p): o for (t, p), o in self._handed_out.items()}
        self._committing = asyncio.ensure_future(self._commit(consumer, offsets))

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
                      ) -> None:
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # monitoring only: the checkpoint holds the truth
            log.warning("source %r: could not commit offsets to Kafka: %s", self.name, exc)

    # -- reading -----------------------------------------------------------------------

    async def _open(self) -> AIOKafkaConsumer:
        source = self.source
        consumer = AIOKafkaConsumer(
            bootstrap_servers=source.bootstrap_servers, group_id=source.group_id,
            enable_auto_commit=False, isolation_level="read_committed",
            auto_offset_reset="earliest", **source.client_options)
        await start_client(consumer, f"source {self.name!r}", source.bootstrap_servers)
        self._consumer = consumer
        await self._assign(await self._partitions())
        if source.bounded:
            self._ends = await consumer.end_offsets(list(self.offsets))
        if source.dead_letter_topic is not None:
            dead_letters = AIOKafkaProducer(
                bootstrap_servers=source.bootstrap_servers, acks="all",
                **{k: v for k, v in source.client_options.items() if k in _SHARED_OPTIONS})
            await start_client(dead_letters, f"source {self.name!r} (its dead-letter "
                               f"topic {source.dead_letter_topic!r})", source.bootstrap_servers)
            self._dead_letters = dead_letters
        log.info("source %r reads %s from %s (partitions: %d%s)%s", self.name,
                 source.topics, source.bootstrap_servers, len(self.offsets),
                 "" if self._parallelism == 1
                 else f", as subtask {self._subtask} of {self._parallelism}",
                 " up to their current end" if source.bounded else "")
        return consumer

    async def _partitions(self) -> list[TopicPartition]:
        consumer = self._consumer
        assert consumer is not None
        # all topics' metadata, fresh: partitions_for_topic() only knows topics the
        # consumer subscribed to, and this one assigns partitions itself
        cluster = await consumer._client.fetch_all_metadata()
        found: list[TopicPartition] = []
        for topic in self.source.topics:
            partitions = cluster.partitions_for_topic(topic)
            if not partitions:
                raise SourceError(self.name, f"topic {topic!r}", LookupError(
                    f"topic {topic!r} does not exist on {self.source.bootstrap_servers}"))
            found.extend(TopicPartition(topic, p) for p in sorted(partitions)
                         if self._owns(topic, p))
        return found

    async def _assign(self, partitions: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        new = [tp for tp in partitions if tp not in self.offsets]
        if not new:
            return
        discovered = bool(self.offsets)  # the job was already reading: these are new
        consumer.assign(list(self.offsets) + new)
        restored = self._restored or {}
        start = self.source.start
        for tp in new:
            offset = restored.get((tp.topic, tp.partition))
            if offset is not None:
                consumer.seek(tp, offset)
            elif self._restored is not None or discovered or start == "earliest":
                # a partition that appeared after the job started (or after its
                # checkpoint): all its records are new to the job
                await consumer.seek_to_beginning(tp)
            elif start == "latest":
                await consumer.seek_to_end(tp)
            elif start == "committed":
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
            else:
                found = await consumer.offsets_for_times({tp: start})
                at = found.get(tp)
                if at is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
            self.offsets[tp] = await consumer.position(tp)
            # tell the watermarks downstream of the partition before its first record
            self._ready.append((Batch([], None, [], (tp.topic, tp.partition)), tp,
                                self.offsets[tp]))

    async def next_batch(self) -> Batch | None:
        consumer = self._consumer or await self._open()
        ready = self._ready
        while not ready:
            if self._ends is not None and all(
                    self.offsets[tp] >= end for tp, end in self._ends.items()):
                return None
            self._polls += 1
            if self._ends is None and self._polls % _DISCOVER_EVERY == 0:
                await self._assign(await self._partitions())
            if not self.offsets:
                # no partition of ours yet (a consumer without one would wait in
                # getmany for an assignment forever): look again later
                await asyncio.sleep(0.1)
                return Batch([])
            data = await consumer.getmany(timeout_ms=100, max_records=self.batch_size)
            if not data:
                return Batch([])  # nothing yet: let the task take a turn
            for tp, polled in data.items():
                end = None if self._ends is None else self._ends.get(tp)
                records = polled if end is None else [r for r in polled if r.offset < end]
                if not records:
                    consumer.pause(tp)
                    continue
                batch = await self._decode(tp, records)
                after = records[-1].offset + 1
                if end is not None and after >= end:
                    consumer.pause(tp)
                ready.append((batch, tp, after))
        batch, tp, after = ready.popleft()
        self.offsets[tp] = after
        return batch

    async def _decode(self, tp: TopicPartition, records: list[Any]) -> Batch:
        value_of = self.source.value
        try:
            values = [value_of(r.value) for r in records]
        except Exception:
            values = []
            kept: list[Any] = []
            for record in records:
                try:
                    values.append(value_of(record.value))
                    kept.append(record)
                except Exception as exc:
                    await self._dead_letter(record, exc)
            records = kept
        return Batch(values, None, [r.timestamp for r in records], (tp.topic, tp.partition),
                     [r.offset for r in records])

    async def _dead_letter(self, record: Any, exc: Exception) -> None:
        where = f"topic {record.topic!r} partition {record.partition} offset {record.offset}"
        producer = self._dead_letters
        if producer is None:
            raise SourceError(self.name, where, exc) from exc
        headers = [*_where_headers(record.topic, record.partition, record.offset),
                   _error_header(exc)]
        assert self.source.dead_letter_topic is not None
        await producer.send_and_wait(self.source.dead_letter_topic, record.value,
                                     key=record.key, headers=headers,
                                     timestamp_ms=record.timestamp)
        log.warning("source %r: %s cannot be read (%s: %s); sent to %r", self.name, where,
                    type(exc).__name__, short_repr(str(exc), 200),
                    self.source.dead_letter_topic)

    async def close(self) -> None:
        if self._committing is not None:  # the last checkpoint's offsets: let them land
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._committing, _LAST_COMMIT_S)
        for client in (self._consumer, self._dead_letters):
            if client is not None:
                await client.stop()
        self._consumer = self._dead_letters = None


_SHARED_OPTIONS = frozenset({
    "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
    "sasl_plain_password", "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider", "client_id", "request_timeout_ms", "api_version"})


Headers = list[tuple[str, bytes]]
Record = tuple[int, bytes | None, bytes | None, int | None, Headers | None]
"""A record ready for Kafka: (partition, key, value, timestamp, headers)."""


_NO_HEADERS: Headers = []  # (aiokafka wants a list; it only reads it)


def _where_headers(topic: str, partition: int, offset: int) -> Headers:
    return [("streamlet.topic", topic.encode()),
            ("streamlet.partition", str(partition).encode()),
            ("streamlet.offset", str(offset).encode())]


def _error_header(exc: BaseException) -> tuple[str, bytes]:
    return ("streamlet.error", f"{type(exc).__name__}: {exc}"[:1000].encode())


class KafkaSinkOperator(Operator):
    """At-least-once: sends without waiting, and waits for every acknowledgement
    at each barrier and at the end, so a completed checkpoint's output is in Kafka."""

    def __init__(self, name: str, topic: str, bootstrap_servers: str,
                 key: Callable[[Any], Any] | None, value_format: Format,
                 key_format: Format | None, client_options: dict[str, Any]) -> None:
        self.name = name
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.key = key
        self.value = serializer(value_format, "value_format")
        self.key_bytes = serializer(key_format if key_format is not None else "str",
                                    "key_format")
        self.client_options = client_options
        self.producer: AIOKafkaProducer | None = None
        self.in_flight: list[asyncio.Future[Any]] = []
        self.partitions: list[int] | None = None
        self._next = 0  # round robin for records without a key

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                        acks="all", **self.client_options)
            await start_client(producer, f"sink {self.name!r}", self.bootstrap_servers)
            self.producer = producer
        return self.producer

    async def _encode(self, producer: AIOKafkaProducer, batch: Batch) -> list[Record]:
        """Serialize the batch and pick each record's partition: the key's by
        Kafka's murmur2, as the Java client does, or round robin without a key."""
        if self.partitions is None:
            self.partitions = sorted(await producer.partitions_for(self.topic))
        partitions = self.partitions
        value, key_of, key_bytes = self.value, self.key, self.key_bytes
        timestamps = batch.timestamps
        records: list[Record] = []
        append = records.append
        for i, record in enumerate(batch.values):
            headers = None
            if type(record) is DeadLetter:
                key, encoded, headers = self._dead_letter(record)
            else:
                key = None if key_of is None else key_bytes(key_of(record))
                encoded = value(record)
            if key is None:
                partition = partitions[self._next % len(partitions)]
                self._next += 1
            else:
                partition = _partitioner(key, partitions, partitions)
            append((partition, key, encoded,
                    None if timestamps is None else max(timestamps[i], 0), headers))
        return records

    def _dead_letter(self, letter: DeadLetter) -> tuple[bytes | None, bytes | None, Headers]:
        """A record a user function failed on, for a dead-letter topic: its value
        (bytes as they are), its key, and headers saying where it failed and why,
        and where it was read when that is known."""
        try:
            encoded = (letter.value if isinstance(letter.value, bytes | None)
                       else self.value(letter.value))
        except Exception:  # the sink's format cannot hold it: keep it readable
            encoded = repr(letter.value).encode()
        key = None if letter.key is None else self.key_bytes(letter.key)
        headers: Headers = [("streamlet.operator", letter.operator.encode()),
                            _error_header(letter.error)]
        source = letter.source
        if source is not None and isinstance(source[0], tuple) and len(source[0]) == 2:
            (topic, partition), offset = source
            headers[:0] = _where_headers(topic, partition, offset)
        return key, encoded, headers

    async def _send_records(self, producer: AIOKafkaProducer, records: list[Record]) -> None:
        """One aiokafka batch per partition, built without an await per record;
        each full or final batch is sent with one await."""
        builders: dict[int, Any] = {}
        for partition, key, value, ts, headers in records:
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(timestamp=ts, key=key, value=value,
                              headers=headers or _NO_HEADERS) is None:
                await self._send(producer, builder, partition)  # full: send, start anew
                builder = builders[partition] = producer.create_batch()
                builder.append(timestamp=ts, key=key, value=value, headers=headers or _NO_HEADERS)
        for partition, builder in builders.items():
            await self._send(producer, builder, partition)
        if len(self.in_flight) > 1_000:
            await self._flush()

    async def process(self, batch: Batch) -> None:
        producer = await self._producer()
        await self._send_records(producer, await self._encode(producer, batch))

    async def _send(self, producer: AIOKafkaProducer, builder: Any, partition: int) -> None:
        self.in_flight.append(await producer.send_batch(builder, self.topic,
                                                        partition=partition))

    async def _flush(self) -> None:
        in_flight, self.in_flight = self.in_flight, []
        if in_flight:
            await asyncio.gather(*in_flight)

    async def prepare_snapshot(self, checkpoint_id: int) -> None:
        await self._flush()

    async def end_input(self) -> None:
        await self._flush()
        await self.end_outputs()

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
