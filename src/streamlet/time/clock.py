"""The one source of processing time.

A clock tells the time in epoch milliseconds and calls back at a time. The
callbacks only post work to a task's mailbox; operator code never runs
inside them, so a timer never interrupts a batch half-way.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """Processing time for a job. Subclass to drive time yourself."""

    def now(self) -> int:
        """Milliseconds since the epoch."""
        raise NotImplementedError

    def call_at(self, when: int, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` (on the event loop) once the clock reaches ``when``."""
        raise NotImplementedError


class SystemClock(Clock):
    """Wall-clock time, with callbacks scheduled on the running event loop."""

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def call_at(self, when: int, callback: Callable[[], None]) -> TimerHandle:
        delay = max(0, when - self.now()) / 1000
        return asyncio.get_running_loop().call_later(delay, callback)


class _ManualHandle:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """A clock that moves only when told to; for tests.

    ``advance(ms)`` moves time forward and runs, in time order, every callback
    that has come due, with ``now()`` reading each callback's own time while
    it runs.
    """

    def __init__(self, start: int = 0) -> None:
        self._now = start
        self._heap: list[tuple[int, int, _ManualHandle]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def call_at(self, when: int, callback: Callable[[], None]) -> TimerHandle:
        handle = _ManualHandle(callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def next_due(self) -> int | None:
        """When the earliest pending callback is due, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def jump_to_next(self) -> int | None:
        """Move to the earliest pending callback's time and run what is due
        there; return that time, or None when nothing is pending."""
        due = self.next_due()
        if due is not None:
            self.advance_to(max(due, self._now))
        return due

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("a clock does not go backwards")
        self.advance_to(self._now + ms)

    def advance_to(self, when: int) -> None:
        if when < self._now:
            raise ValueError(f"a clock does not go backwards: {when} < {self._now}")
        heap = self._heap
        while heap and heap[0][0] <= when:
            due, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, due)
            handle.callback()
        self._now = when
