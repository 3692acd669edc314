"""Cancelling a job, and one failure stopping the whole job.

The unbounded sources here yield a few items and then wait on an event that
is never set; the test waits (on events set by the sink) until the job has
really got going, and only then cancels it. ``asyncio.wait_for(..., SAFETY)``
only bounds a hang; nothing waits for time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import streamlet as sl

SAFETY = 5  # seconds; a bound on a hung run, never a wait for something to happen
N = 5


class Probe:
    """Events and flags that the user functions of one test report through."""

    def __init__(self) -> None:
        self.forever = asyncio.Event()  # never set
        self.seen: list[Any] = []
        self.seen_events = [asyncio.Event() for _ in range(N)]
        self.seen_all = asyncio.Event()
        self.stuck_started = asyncio.Event()
        self.log: list[str] = []

    async def unbounded(self) -> AsyncIterator[int]:
        """Yields 0..N one at a time, each after the sink saw the one before; then waits."""
        try:
            for i in range(N):
                yield i
                await self.seen_events[i].wait()
            yield N
            await self.forever.wait()
            yield -1  # never reached
        finally:
            self.log.append("source closed")

    def sink(self, x: int) -> None:
        self.seen.append(x)
        self.seen_events[x].set()
        if len(self.seen) == N:
            self.seen_all.set()

    async def lookup(self, x: int) -> int:
        """Returns at once, except for record N, which never finishes."""
        if x < N:
            return x
        self.stuck_started.set()
        try:
            await self.forever.wait()
        finally:
            self.log.append(f"call {x} cancelled")
        return x


def leftover_tasks() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, SAFETY)
    assert task.cancelled()


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("concurrency", [1, 3])
async def test_cancel_run_async_closes_source_and_cancels_in_flight_calls(
        concurrency: int, keyed: bool) -> None:
    probe = Probe()
    p = sl.Pipeline()
    stream = p.from_async_iterable(probe.unbounded()).map(
        sl.operator(concurrency=concurrency)(probe.lookup), name="lookup")
    if keyed:  # the sink in a task of its own, behind a channel
        stream.key_by(lambda x: x % 2).sink(probe.sink)
    else:
        stream.sink(probe.sink)

    task = asyncio.create_task(p.run_async())
    both = asyncio.gather(probe.seen_all.wait(), probe.stuck_started.wait())
    await asyncio.wait_for(both, SAFETY)
    assert not task.done()

    await cancel_and_wait(task)
    assert probe.seen == list(range(N))
    assert sorted(probe.log) == sorted([f"call {N} cancelled", "source closed"])
    assert leftover_tasks() == []


async def test_cancel_while_the_source_waits_for_room_closes_it() -> None:
    """The source is blocked by backpressure (not in its own await) when cancelled."""
    closed: list[str] = []
    first_seen = asyncio.Event()
    hold = asyncio.Event()  # never set: the sink never lets anything through

    async def flood() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append("source closed")

    async def slow_sink(x: int) -> None:
        first_seen.set()
        await hold.wait()

    p = sl.Pipeline(batch_size=4, channel_capacity=1)
    p.from_async_iterable(flood()).key_by(lambda x: x % 3).sink(slow_sink)
    task = asyncio.create_task(p.run_async())
    await asyncio.wait_for(first_seen.wait(), SAFETY)
    await cancel_and_wait(task)
    assert closed == ["source closed"]
    assert leftover_tasks() == []


async def test_cancelled_in_flight_call_may_clean_up_asynchronously() -> None:
    """A cancelled call's finally that itself awaits completes before the run returns."""
    probe = Probe()
    cleanup: list[str] = []

    @sl.operator(concurrency=2)
    async def write(x: int) -> int:
        if x < N:
            return x
        probe.stuck_started.set()
        try:
            await probe.forever.wait()
        finally:
            for _ in range(10):  # e.g. roll back a transaction: a few round trips
                await asyncio.sleep(0)
            cleanup.append("rolled back")
        return x

    p = sl.Pipeline()
    p.from_async_iterable(probe.unbounded()).map(write).sink(probe.sink)
    task = asyncio.create_task(p.run_async())
    await asyncio.wait_for(asyncio.gather(probe.seen_all.wait(), probe.stuck_started.wait()),
                           SAFETY)
    await cancel_and_wait(task)
    assert cleanup == ["rolled back"]
    assert leftover_tasks() == []


async def test_cancel_an_unbounded_sync_source_closes_its_generator() -> None:
    closed: list[str] = []
    seen = asyncio.Event()

    def counter() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append("generator closed")

    def sink(x: int) -> None:
        if x >= 1000:
            seen.set()

    p = sl.Pipeline(batch_size=64)
    p.from_iterable(counter()).sink(sink)
    task = asyncio.create_task(p.run_async())
    await asyncio.wait_for(seen.wait(), SAFETY)
    await cancel_and_wait(task)
    assert closed == ["generator closed"]


async def test_cancel_before_the_job_starts() -> None:
    probe = Probe()
    p = sl.Pipeline()
    p.from_async_iterable(probe.unbounded()).sink(probe.sink)
    task = asyncio.create_task(p.run_async())
    await cancel_and_wait(task)  # cancelled before its first step
    assert probe.seen == []
    assert leftover_tasks() == []


async def test_cancelling_the_caller_of_run_async_cancels_the_job() -> None:
    probe = Probe()
    p = sl.Pipeline()
    p.from_async_iterable(probe.unbounded()).map(
        sl.operator(concurrency=2)(probe.lookup)).sink(probe.sink)

    async def caller() -> None:
        await p.run_async()

    task = asyncio.create_task(caller())
    await asyncio.wait_for(asyncio.gather(probe.seen_all.wait(), probe.stuck_started.wait()),
                           SAFETY)
    await cancel_and_wait(task)
    assert sorted(probe.log) == sorted([f"call {N} cancelled", "source closed"])


# -- a failure anywhere stops everything ---------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_failure_in_one_branch_cancels_the_other_branches(concurrency: int) -> None:
    probe = Probe()

    @sl.operator(concurrency=concurrency)
    async def validate(x: int) -> int:
        # fail only once the other branch is running with a call in flight
        await probe.seen_all.wait()
        await probe.stuck_started.wait()
        if x == 2:
            raise ValueError("invalid order 2")
        return x

    p = sl.Pipeline()
    (p.from_async_iterable(probe.unbounded(), name="clicks")
        .map(sl.operator(concurrency=3)(probe.lookup), name="lookup")
        .sink(probe.sink))
    p.from_iterable([1, 2, 3], name="orders").map(validate).sink(lambda x: None)

    with pytest.raises(sl.UserFunctionError) as info:
        await asyncio.wait_for(p.run_async(), SAFETY)
    assert str(info.value).startswith(
        "operator 'validate': ValueError: invalid order 2 while processing record 2.")
    assert sorted(probe.log) == sorted([f"call {N} cancelled", "source closed"])
    assert leftover_tasks() == []


async def test_failure_in_a_downstream_task_cancels_the_source() -> None:
    probe = Probe()

    def explode(x: int) -> None:
        probe.sink(x)
        if x == N - 1:
            raise RuntimeError("sink broke")

    p = sl.Pipeline()
    (p.from_async_iterable(probe.unbounded())
        .key_by(lambda x: "all")
        .sink(explode, name="writer"))
    with pytest.raises(sl.UserFunctionError) as info:
        await asyncio.wait_for(p.run_async(), SAFETY)
    assert str(info.value).startswith(
        f"operator 'writer', key 'all': RuntimeError: sink broke while processing record {N - 1}.")
    assert probe.log == ["source closed"]
    assert leftover_tasks() == []


async def test_source_failure_cancels_the_other_branches() -> None:
    probe = Probe()

    async def broken() -> AsyncIterator[int]:
        await probe.seen_all.wait()
        await probe.stuck_started.wait()
        yield 1
        raise ConnectionResetError("feed reset")

    p = sl.Pipeline()
    (p.from_async_iterable(probe.unbounded())
        .map(sl.operator(concurrency=2)(probe.lookup)).sink(probe.sink))
    p.from_async_iterable(broken(), name="feed").sink(lambda x: None)
    with pytest.raises(sl.SourceError) as info:
        await asyncio.wait_for(p.run_async(), SAFETY)
    assert str(info.value) == "source 'feed', after 1 record: ConnectionResetError: feed reset"
    assert sorted(probe.log) == sorted([f"call {N} cancelled", "source closed"])
    assert leftover_tasks() == []


def test_failure_through_run_stops_an_unbounded_job() -> None:
    closed: list[str] = []

    async def ticks() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                await asyncio.sleep(0)
                yield i
                i += 1
        finally:
            closed.append("ticks closed")

    def check(x: int) -> int:
        if x == 100:
            raise ValueError("tick 100")
        return x

    p = sl.Pipeline(batch_size=16)
    p.from_async_iterable(ticks()).map(check).sink(lambda x: None)
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'check': ValueError: tick 100 "):
        p.run()
    assert closed == ["ticks closed"]
