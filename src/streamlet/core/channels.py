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
from .control import (
    ACTIVE,
    END_OF_INPUT,
    IDLE,
    MIN_WATERMARK,
    Barrier,
    Watermark,
    WatermarkStatus,
)
from .mailbox import MAIL, Mailbox
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

    async def watermark(self, timestamp: int) -> None:
        await self.channel.send(Watermark(timestamp))

    async def status(self, idle: bool) -> None:
        await self.channel.send(IDLE if idle else ACTIVE)

    async def end(self) -> None:
        await self.channel.send(END_OF_INPUT)

    async def barrier(self, checkpoint_id: int) -> None:
        await self.channel.send(Barrier(checkpoint_id))


class InputGate:
    """A task's input channels, read as one stream of batches and control elements.

    Where several inputs are ready, which one is read next is drawn from a
    seeded ``random.Random``, so that order-dependent bugs show up in tests
    and replay exactly from the seed.

    The gate combines its inputs' watermarks as Flink's status valve does:
    the task's watermark is the minimum over the inputs that are not idle,
    and it never goes backwards; the task is idle only when every input is.
    An input that has ended no longer holds the watermark back.
    """

    def __init__(self, channels: list[Channel], rng: random.Random,
                 mailbox: Mailbox | None = None, inputs: list[int] | None = None,
                 quiet: set[int] | None = None) -> None:
        self.channels = channels
        self._open = list(channels)
        self._rng = rng
        self._waiter: asyncio.Future[None] | None = None
        mailbox = mailbox if mailbox is not None else Mailbox()
        mailbox.wake = self.wake
        self._mail = mailbox.mail
        self._index = {id(c): i for i, c in enumerate(channels)}
        # which input of the task each channel feeds (in a parallel job, a
        # shuffled input is one channel per worker)
        self._input_of = {id(c): i for c, i in zip(
            channels, inputs if inputs is not None else range(len(channels)), strict=True)}
        n = len(channels)
        self._watermarks = [MIN_WATERMARK] * n
        self._idle = [False] * n
        # ``quiet`` channels carry nothing but their end (a worker that reads none
        # of the sources behind them): they count as ended from the start
        self._ended = [i in quiet for i in range(n)] if quiet else [False] * n
        self.watermark = MIN_WATERMARK
        self.idle = False
        self.last_input = 0  # which input the last batch came from
        self._pending: deque[Any] = deque()
        self._blocked: set[int] = set()  # inputs that delivered the barrier being aligned
        self._aligning: Barrier | None = None
        for channel in channels:
            channel.gate = self

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pick(self) -> Channel | None:
        open_channels = self._open
        if len(open_channels) == 1 and not self._blocked:
            channel = open_channels[0]
            return channel if channel.ready() else None
        blocked = self._blocked
        ready = [c for c in open_channels if c.ready() and id(c) not in blocked]
        if not ready:
            return None
        return ready[0] if len(ready) == 1 else self._rng.choice(ready)

    async def receive(self) -> Any:
        """The next batch, combined watermark or status, an aligned ``Barrier``,
        ``MAIL`` when the task's mailbox has work, or ``END_OF_INPUT`` once all
        inputs ended."""
        pending = self._pending
        while True:
            if self._mail:
                return MAIL
            if pending:
                return pending.popleft()
            channel = self._pick()
            if channel is not None:
                item = channel.receive_nowait()
                if type(item) is Batch:
                    self.last_input = self._input_of[id(channel)]
                    return item
                if type(item) is Barrier:
                    if len(self._open) == 1:
                        return item
                    self._blocked.add(id(channel))  # aligned: read it again after the barrier
                    self._aligning = item
                else:
                    self._control(self._index[id(channel)], item)
                    if item is END_OF_INPUT:
                        self._open.remove(channel)
                        self._blocked.discard(id(channel))
                aligned = self._aligned()
                if aligned is not None:
                    return aligned
                continue
            if not self._open:
                return END_OF_INPUT
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def state(self) -> tuple[list[int], list[bool], int, bool]:
        """Each input's watermark and idleness and the combined ones, for a
        checkpoint: restored, an input does not hold event time back to where
        it was before the checkpoint, nor let records through as on time that
        the uninterrupted run found late."""
        return list(self._watermarks), list(self._idle), self.watermark, self.idle

    def restore(self, state: tuple[list[int], list[bool], int, bool]) -> None:
        watermarks, idle, self.watermark, self.idle = state
        if len(watermarks) == len(self._watermarks):
            self._watermarks = list(watermarks)
            self._idle = list(idle)

    def _aligned(self) -> Barrier | None:
        """The barrier, once every open input has delivered it (Flink's aligned
        checkpoints: an input that has passed the barrier is not read until then,
        so that nothing after the barrier reaches the snapshot)."""
        barrier = self._aligning
        if barrier is None or len(self._blocked) < len(self._open):
            return None
        self._aligning = None
        self._blocked.clear()
        return barrier

    def _control(self, index: int, item: Any) -> None:
        if type(item) is Watermark:
            self._watermarks[index] = max(self._watermarks[index], item.timestamp)
        elif type(item) is WatermarkStatus:
            self._idle[index] = item.idle
        else:  # the end of this input
            self._ended[index] = True
        live = [i for i in range(len(self._ended)) if not self._ended[i]]
        active = [i for i in live if not self._idle[i]]
        all_idle = bool(live) and not active
        if all_idle != self.idle:
            self.idle = all_idle
            self._pending.append(IDLE if all_idle else ACTIVE)
        if active:
            combined = min(self._watermarks[i] for i in active)
        elif not live:
            combined = min(self._watermarks)  # every input ended: its last word stands
        else:
            return
        if combined > self.watermark:
            self.watermark = combined
            self._pending.append(Watermark(combined))
