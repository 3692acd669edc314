"""A fast source feeding a slow sink runs in bounded memory.

The sink awaits real I/O-like pauses, so while it waits the source is free to
run ahead; only backpressure through the full channel stops it. The bound is
asserted on what is buffered, never on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import streamlet as sl

RECORDS = 5_000_000
BATCH = 1024
CAPACITY = 4


class Counting:
    """A source that counts what it has handed out."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.produced = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.produced = i + 1
            yield i


def test_slow_sink_holds_a_fast_source_back() -> None:
    source = Counting(RECORDS)
    consumed = 0
    max_in_flight = 0

    async def slow_sink(value: Any) -> None:
        nonlocal consumed, max_in_flight
        consumed += 1
        if consumed % 50_000 == 0:
            max_in_flight = max(max_in_flight, source.produced - consumed)
            await asyncio.sleep(0.001)  # a slow write; the source runs meanwhile

    pipeline = sl.Pipeline("backpressure", batch_size=BATCH, channel_capacity=CAPACITY)
    (pipeline.from_iterable(source)
        .key_by(lambda v: v % 100)  # a channel between the source and the sink
        .sink(slow_sink))
    result = pipeline.run()

    assert consumed == RECORDS
    (channel,) = result.channels.values()
    # The source really was stopped by a full channel, over and over...
    assert channel.blocked_sends > 50
    # ...so the channel never held more than its capacity...
    assert channel.max_buffered <= CAPACITY
    assert channel.max_buffered_records <= CAPACITY * BATCH
    # ...and end to end, records read but not yet written stay bounded: one
    # batch in the source's hands, the channel, one batch in the sink's.
    assert 0 < max_in_flight <= (CAPACITY + 2) * BATCH


def test_a_flat_map_that_multiplies_records_is_cut_into_bounded_batches() -> None:
    consumed = 0

    async def slow_sink(value: Any) -> None:
        nonlocal consumed
        consumed += 1
        if consumed % 100_000 == 0:
            await asyncio.sleep(0.001)

    pipeline = sl.Pipeline("fan", batch_size=BATCH, channel_capacity=CAPACITY)
    (pipeline.from_iterable(range(2_000))
        .flat_map(lambda v: range(500))  # one input batch becomes 512,000 records
        .key_by(lambda v: v)
        .sink(slow_sink))
    result = pipeline.run()

    assert consumed == 1_000_000
    (channel,) = result.channels.values()
    assert channel.max_buffered_records <= CAPACITY * BATCH
    assert channel.blocked_sends > 0
