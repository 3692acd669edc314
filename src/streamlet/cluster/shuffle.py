"""A ``key_by`` edge between worker processes: each batch is cut by owner.

Every record's key group (a stable hash of its key) says which worker owns
it (``worker_for_key_group``). The producer keeps its own part on a local
channel and sends each other worker its part as one frame on a channel of
its own, so a batch costs one frame per worker, not one per record.
Watermarks, idleness, barriers and the end of input go to every worker, in
order with the batches around them: that is what lets each consumer combine
watermarks and align barriers across all its inputs.

Memory is bounded on both sides. A frame channel admits at most its
capacity of frames in flight (the receiver's credits), and the pump on the
receiving side moves frames into the consumer's channel only as fast as the
consumer takes them (``Channel.send`` waits while it is full). A slow
consumer therefore blocks its producers, whichever process they are in, and
each process holds at most ``capacity`` batches per channel.
"""

from __future__ import annotations

from itertools import compress
from typing import Any

from streamlet.core.batch import Batch, split
from streamlet.core.channels import Channel
from streamlet.core.control import ACTIVE, END_OF_INPUT, IDLE, Barrier, Watermark
from streamlet.core.operator import Output
from streamlet.native import speedups
from streamlet.state.keys import key_group, key_group_python, worker_for_key_group

from . import codec
from .frames import FrameReceiver, FrameSender

_CACHED_KEYS = 1_000_000  # keys whose owner is remembered (a key's hash is computed once)


class ShuffleOutput(Output):
    """What a producer writes into a shuffle, in worker ``me`` of ``workers``."""

    def __init__(self, local: Channel, senders: dict[int, FrameSender], me: int, workers: int,
                 max_parallelism: int, max_batch_size: int) -> None:
        self.local = local
        self.senders = senders  # other worker -> the channel to it
        self.me = me
        self.workers = workers
        self.max_parallelism = max_parallelism
        self.max_batch_size = max_batch_size
        self._owner_of_group = [worker_for_key_group(g, workers, max_parallelism)
                                for g in range(max_parallelism)]
        self._owner: dict[Any, int] = {}  # key -> worker

    def _owners(self, keys: list[Any]) -> list[int]:
        owner = self._owner
        get = owner.get
        owners = list(map(get, keys))
        if None in owners:
            if len(owner) > _CACHED_KEYS:
                owner.clear()
            of_group = self._owner_of_group
            maxp = self.max_parallelism
            for i, known in enumerate(owners):
                if known is None:
                    key = keys[i]
                    owners[i] = owner[key] = of_group[key_group(key, maxp)]
        return owners  # type: ignore[return-value]

    def _parts(self, batch: Batch) -> list[tuple[int, Batch]]:
        """``(worker, part)`` for each worker that owns some of ``batch``'s records."""
        keys = batch.keys
        assert keys is not None, "a shuffle carries keyed batches"
        if speedups is not None:  # the same cut in C, with no cache: see streamlet.native
            cut = speedups.cut(batch.values, keys, batch.timestamps, self.workers,
                               self.max_parallelism, key_group_python)
            return [(worker, Batch(part[0], part[1], part[2], batch.split))
                    for worker, part in enumerate(cut) if part is not None]
        owners = self._owners(keys)
        values, timestamps = batch.values, batch.timestamps
        parts = []
        workers = self.workers
        for worker in range(workers):
            selector: list[Any]
            if workers == 2:
                selector = owners if worker == 1 else [not o for o in owners]
            else:
                selector = [o == worker for o in owners]
            part_values = list(compress(values, selector))
            if not part_values:
                continue
            parts.append((worker, Batch(
                part_values, list(compress(keys, selector)),
                None if timestamps is None else list(compress(timestamps, selector)),
                batch.split)))
        return parts

    async def push(self, batch: Batch) -> None:
        me = self.me
        for piece in split(batch, self.max_batch_size):  # (a flat_map may multiply one)
            for worker, part in self._parts(piece):
                if worker == me:
                    await self.local.send(part)
                else:
                    await self.senders[worker].send(*codec.encode(part))

    async def _everywhere(self, element: Any) -> None:
        await self.local.send(element)
        kind, payload = codec.encode(element)
        for sender in self.senders.values():
            await sender.send(kind, payload)

    async def watermark(self, timestamp: int) -> None:
        await self._everywhere(Watermark(timestamp))

    async def status(self, idle: bool) -> None:
        await self._everywhere(IDLE if idle else ACTIVE)

    async def barrier(self, checkpoint_id: int) -> None:
        await self._everywhere(Barrier(checkpoint_id))

    async def end(self) -> None:
        await self._everywhere(END_OF_INPUT)
        for sender in self.senders.values():
            await sender.end()


async def pump(receiver: FrameReceiver, channel: Channel) -> None:
    """Move what another worker sends into the consumer's channel, until its end."""
    receive = receiver.receive
    send = channel.send
    decode = codec.decode
    while True:
        frame = await receive()
        if frame is None:
            return
        await send(decode(*frame))
