"""Exactly-once output to Kafka: ``to_kafka(..., delivery="exactly-once")``.

One transactional producer per sink task, with a stable ``transactional.id``,
and one Kafka transaction per checkpoint: records go into the open
transaction; at the checkpoint barrier the sink waits until Kafka holds them
all (pre-commit) and the transaction waits, open, until the checkpoint is
durable; then it commits. Records that arrive in between wait in memory for
the commit, since a producer has one transaction at a time.

Flink's Kafka sink survives a crash between "checkpoint complete" and "Kafka
commit" by resuming the crashed producer's transaction and committing it.
aiokafka cannot resume a transaction, and starting a producer with the same
``transactional.id`` aborts whatever the crashed one left open. So the
checkpoint keeps the pre-committed transaction's records themselves, and each
transaction also commits a *marker*: through ``send_offsets_to_transaction``,
the checkpoint id as the "offset" of partition 0 of the output topic, for a
consumer group named after the ``transactional.id``. Offsets committed in a
transaction become visible exactly when it commits, so after a restore the
marker tells whether the checkpoint's transaction committed before the crash:
if it did, nothing is done; if not (it was aborted), its records are sent
again in a new transaction, marker included, before anything else.

With ``workers=N`` (N > 1) each worker's producer has its own
``transactional.id``, ``<transactional_id>-<subtask>``, and its own marker
group of that name. Restoring with another number of workers is refused: a
transaction of a worker that no longer exists could be neither committed nor
fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamlet.core.batch import Batch
from streamlet.core.operator import Acknowledge, OperatorContext
from streamlet.errors import CheckpointError
from streamlet.state.snapshots import OperatorState, dumps, loads

from .kafka import _SHARED_OPTIONS, Format, KafkaSinkOperator, Record, start_client

log = logging.getLogger("streamlet.kafka")

TRANSACTION_TIMEOUT_MS = 900_000
"""How long the broker keeps a transaction open: the broker's default maximum
(15 minutes). A transaction stays open from its first record to the end of
the checkpoint after it; longer, and the broker aborts it (the job then fails
and its restore sends the records again)."""
ABORT_TIMEOUT_S = 10.0


class ExactlyOnceKafkaSink(KafkaSinkOperator):
    def __init__(self, name: str, topic: str, bootstrap_servers: str,
                 key: Callable[[Any], Any] | None, value_format: Format,
                 key_format: Format | None, transactional_id: str,
                 client_options: dict[str, Any]) -> None:
        super().__init__(name, topic, bootstrap_servers, key, value_format, key_format,
                         client_options)
        self.configured_id = transactional_id
        self.transactional_id = transactional_id
        self.marker = TopicPartition(topic, 0)
        self.checkpointing = False
        self.in_transaction = False
        self.sent: list[Record] = []  # what the open Kafka transaction holds
        self.covers: int | None = None  # pre-committed: commits when this checkpoint does
        self.waiting: list[Record] = []  # arrived after the barrier, before the commit
        self.last_barrier = 0
        self.restored_pending: tuple[int, list[Record]] | None = None

    def open(self, ctx: OperatorContext) -> None:
        # one producer per worker, fencing none of the others
        self.transactional_id = (self.configured_id if ctx.parallelism == 1
                                 else f"{self.configured_id}-{ctx.subtask}")

    def open_checkpoints(self, acknowledge: Acknowledge, max_parallelism: int) -> None:
        super().open_checkpoints(acknowledge, max_parallelism)
        self.checkpointing = True

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            options = {"transaction_timeout_ms": TRANSACTION_TIMEOUT_MS, **self.client_options}
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                        transactional_id=self.transactional_id, acks="all",
                                        **options)
            # starting fences every earlier producer with this transactional.id
            # and aborts the transaction it left open (or finishes its commit)
            await start_client(producer, f"sink {self.name!r}", self.bootstrap_servers)
            self.producer = producer
            if not self.checkpointing:
                log.warning("sink %r: delivery='exactly-once' without checkpointing: its "
                            "output becomes visible only when the input ends", self.name)
            if self.restored_pending is not None:
                await self._recover(producer, *self.restored_pending)
                self.restored_pending = None
        return self.producer

    # -- restore ----------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> OperatorState | None:
        if self.covers is None:
            return None
        return OperatorState(dumps((self.covers, self.sent)), {})

    def rescale_meta(self, metas: list[bytes], subtask: int, parallelism: int) -> bytes:
        raise CheckpointError(
            f"operator {self.name!r}: the checkpoint was taken with {len(metas)} "
            f"worker{'' if len(metas) == 1 else 's'} and the job now has {parallelism}; an "
            "exactly-once Kafka sink cannot be rescaled yet (each worker's transactional.id "
            "holds its own transaction): restore with the same number of workers, or drain "
            "the job first")

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        covers, records = loads(state.meta)
        self.restored_pending = (covers, records)
        self.last_barrier = covers

    async def _committed_marker(self) -> int | None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.transactional_id,
            enable_auto_commit=False,
            **{k: v for k, v in self.client_options.items() if k in _SHARED_OPTIONS})
        await start_client(consumer, f"sink {self.name!r} (reading its commit marker)",
                           self.bootstrap_servers)
        try:
            committed: int | None = await consumer.committed(self.marker)
            return committed
        finally:
            await consumer.stop()

    async def _recover(self, producer: AIOKafkaProducer, covers: int,
                       records: list[Record]) -> None:
        """The restored checkpoint holds a transaction pre-committed for checkpoint
        ``covers``: commit its records now unless the crashed attempt already did."""
        committed = await self._committed_marker()
        if committed is not None and committed >= covers:
            log.info("sink %r: the transaction of checkpoint %d was committed before the "
                     "restart", self.name, covers)
            return
        log.warning("sink %r: the transaction of checkpoint %d did not commit before the "
                    "restart; sending its %d records again", self.name, covers, len(records))
        await producer.begin_transaction()
        self.in_transaction = True
        self.sent = records
        await self._send_records(producer, records)
        await self._pre_commit(covers)
        await self._commit()

    # -- transactions -----------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        producer = await self._producer()
        records = await self._encode(producer, batch)
        if self.covers is not None:
            self.waiting.extend(records)  # the open transaction waits for its checkpoint
            return
        if not self.in_transaction:
            await producer.begin_transaction()
            self.in_transaction = True
        self.sent.extend(records)
        await self._send_records(producer, records)

    async def _pre_commit(self, covers: int) -> None:
        """Make what the transaction holds durable in Kafka, with the marker, and
        keep it open until checkpoint ``covers`` (or a later one) completes."""
        producer = await self._producer()
        if self.covers is not None:
            if not self.waiting:
                return  # nothing since the last pre-commit, which still waits
            # that checkpoint never completed (it timed out): what came after it
            # joins the same transaction, which now waits for this checkpoint
            records, self.waiting = self.waiting, []
            self.sent.extend(records)
            await self._send_records(producer, records)
        elif not self.in_transaction:
            return  # nothing written since the last commit
        await self._flush()
        await producer.send_offsets_to_transaction(
            {self.marker: OffsetAndMetadata(covers, f"streamlet checkpoint {covers}")},
            self.transactional_id)
        self.covers = covers

    async def _commit(self) -> None:
        producer = self.producer
        assert producer is not None
        await producer.commit_transaction()
        log.debug("sink %r committed the transaction of checkpoint %s", self.name, self.covers)
        self.in_transaction = False
        self.covers = None
        self.sent = []
        if self.waiting:
            records, self.waiting = self.waiting, []
            await producer.begin_transaction()
            self.in_transaction = True
            self.sent = records
            await self._send_records(producer, records)

    async def prepare_snapshot(self, checkpoint_id: int) -> None:
        self.last_barrier = checkpoint_id
        await self._pre_commit(checkpoint_id)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.covers is not None and self.covers <= checkpoint_id:
            await self._commit()

    async def end_input(self) -> None:
        await self._producer()
        if self.checkpointing:
            # commits with the first checkpoint whose barrier did not reach this
            # sink: the one that holds the sink's final state
            await self._pre_commit(self.last_barrier + 1)
        else:
            await self._pre_commit(0)
            await self._commit()
        await self.end_outputs()

    async def close(self) -> None:
        producer = self.producer
        if producer is None:
            return
        self.producer = None
        try:
            if self.in_transaction:  # a failure or a cancel: nothing of it may show
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_S)
        finally:
            await producer.stop()
