"""Per-key timers, in event time and in processing time.

A timer is a (key, timestamp) pair, registered at most once: registering the
same pair again is a no-op, as in Flink. Timers are kept in buckets, one per
timestamp, each an insertion-ordered dict of keys, with a heap of the
bucket timestamps. Jobs set many timers for the same instant (the end of a
second, of a window), so a registration is usually one dict insert, and
timers of one instant fire in the order they were registered. Every bucket
has exactly one heap entry; both go when the bucket is empty. The keyed
operator fires timers straight from these two structures.
"""

from __future__ import annotations

import heapq
from typing import Any


class TimerQueue:
    """The timers of one time domain of one keyed operator."""

    __slots__ = ("buckets", "heap")

    def __init__(self) -> None:
        self.heap: list[int] = []
        self.buckets: dict[int, dict[Any, None]] = {}

    def register(self, key: Any, timestamp: int) -> bool:
        """Add a timer; True when it is new."""
        bucket = self.buckets.get(timestamp)
        if bucket is None:
            self.buckets[timestamp] = {key: None}
            heapq.heappush(self.heap, timestamp)
            return True
        if key in bucket:
            return False
        bucket[key] = None
        return True

    def delete(self, key: Any, timestamp: int) -> None:
        bucket = self.buckets.get(timestamp)
        if bucket is not None:
            bucket.pop(key, None)

    def peek(self) -> int | None:
        """The earliest pending timer's timestamp, or None."""
        heap = self.heap
        buckets = self.buckets
        while heap:
            timestamp = heap[0]
            if buckets.get(timestamp):
                return timestamp
            heapq.heappop(heap)  # every key of that instant was deleted
            buckets.pop(timestamp, None)
        return None

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def items(self) -> list[tuple[Any, int]]:
        """Every pending (key, timestamp), in firing order, for snapshots."""
        return [(key, ts) for ts in sorted(self.buckets) for key in self.buckets[ts]]

    def restore(self, items: list[tuple[int, Any, int]]) -> None:
        """Register ``(position, key, timestamp)`` items in order of position: the
        positions ``items()`` gave, so that each instant fires in its old order."""
        for _, key, timestamp in sorted(items, key=lambda item: item[0]):
            self.register(key, timestamp)

