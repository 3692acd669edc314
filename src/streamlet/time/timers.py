"""Per-key timers, in event time and in processing time.

A timer is a (key, timestamp) pair, registered at most once: registering the
same pair again is a no-op, as in Flink. Timers wait in a heap ordered by
timestamp (then by registration); deleting one only forgets the pair, and
the stale heap entry is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any


class TimerQueue:
    """The timers of one time domain of one keyed operator."""

    __slots__ = ("_heap", "_pending", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._pending: set[tuple[Any, int]] = set()
        self._seq = itertools.count()

    def register(self, key: Any, timestamp: int) -> bool:
        """Add a timer; True when it is new (so it may be the earliest)."""
        pair = (key, timestamp)
        if pair in self._pending:
            return False
        self._pending.add(pair)
        heapq.heappush(self._heap, (timestamp, next(self._seq), key))
        return True

    def delete(self, key: Any, timestamp: int) -> None:
        self._pending.discard((key, timestamp))

    def peek(self) -> int | None:
        """The earliest pending timer's timestamp, or None."""
        heap = self._heap
        pending = self._pending
        while heap and (heap[0][2], heap[0][0]) not in pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, until: int) -> tuple[int, Any] | None:
        """The earliest timer at or before ``until``, removed; None if there is none."""
        heap = self._heap
        pending = self._pending
        while heap and heap[0][0] <= until:
            timestamp, _, key = heapq.heappop(heap)
            pair = (key, timestamp)
            if pair in pending:
                pending.discard(pair)
                return timestamp, key
        return None

    def __len__(self) -> int:
        return len(self._pending)

    def items(self) -> list[tuple[Any, int]]:
        """Every pending (key, timestamp), for snapshots."""
        return sorted(self._pending, key=lambda pair: pair[1])
