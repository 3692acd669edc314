"""Bounded channels between tasks, and the gate a task reads them through.

A channel holds at most ``capacity`` elements (batches or control elements);
a producer that finds it full is suspended until the consumer takes one.
That suspension is backpressure: it reaches back through the producing chain
to its source, which stops reading. Batches are bounded in size where they
enter a channel, so a channel also bounds the records it holds.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from .batch import Batch, split
from .control import END_OF_INPUT
from .operator import Output


@dataclass(frozen=True)
class ChannelStatistics:
    name: str
    capacity: int
    buffered: int
    buffered_records: int
    max_buffered: int
    max_buffered_records: int
    blocked_sends: int
    batches_sent: int
    records_sent: int


class Channel:
    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("channel capacity must be at least 1")
        self.name = name
        self.capacity = capacity
        self._buffer: deque[Any] = deque()
        self._records = 0
        self._max_buffered = 0
        self._max_records = 0
        self._blocked_sends = 0
        self._batches = 0
        self._records_sent = 0
        self._senders: deque[asyncio.Future[None]] = deque()
        self.gate: InputGate | None = None

    async def send(self, item: Any) -> None:
        buffer = self._buffer
        while len(buffer) >= self.capacity:
            self._blocked_sends += 1
            waiter = asyncio.get_running_loop().create_future()
            self._senders.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._senders:
                    self._senders.remove(waiter)
        buffer.append(item)
        if type(item) is Batch:
            n = len(item.values)
            self._records += n
            self._batches += 1
            self._records_sent += n
            self._max_records = max(self._max_records, self._records)
        self._max_buffered = max(self._max_buffered, len(buffer))
        gate = self.gate
        if gate is not None:
            gate.wake()

    def ready(self) -> bool:
        return bool(self._buffer)

    def receive_nowait(self) -> Any:
        item = self._buffer.popleft()
        if type(item) is Batch:
            self._records -= len(item.values)
        senders = self._senders
        while senders:
            waiter = senders.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return item

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(self.name, self.capacity, len(self._buffer), self._records,
                                 self._max_buffered, self._max_records, self._blocked_sends,
                                 self._batches, self._records_sent)


class ChannelOutput(Output):
    """The end of a chain that feeds a channel; cuts oversized batches."""

    def __init__(self, channel: Channel, max_batch_size: int) -> None:
        self.channel = channel
        self.max_batch_size = max_batch_size

    async def push(self, batch: Batch) -> None:
        if len(batch.values) <= self.max_batch_size:
            await self.channel.send(batch)
        else:
            for part in split(batch, self.max_batch_size):
                await self.channel.send(part)

    async def end(self) -> None:
        await self.channel.send(END_OF_INPUT)


class InputGate:
    """A task's inputs. Where several are ready, which one is read next is drawn
    from a seeded ``random.Random``, so that order-dependent bugs show up in
    tests and replay exactly from the seed."""

    def __init__(self, channels: list[Channel], rng: random.Random) -> None:
        self.channels = channels
        self._open = list(channels)
        self._rng = rng
        self._waiter: asyncio.Future[None] | None = None
        for channel in channels:
            channel.gate = self

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pick(self) -> Channel | None:
        open_channels = self._open
        if len(open_channels) == 1:
            channel = open_channels[0]
            return channel if channel.ready() else None
        ready = [c for c in open_channels if c.ready()]
        if not ready:
            return None
        return ready[0] if len(ready) == 1 else self._rng.choice(ready)

    async def receive(self) -> Any:
        """The next batch from any input, or END_OF_INPUT once all inputs ended."""
        while True:
            channel = self._pick()
            if channel is not None:
                item = channel.receive_nowait()
                if item is END_OF_INPUT:
                    self._open.remove(channel)
                    continue
                return item
            if not self._open:
                return END_OF_INPUT
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
