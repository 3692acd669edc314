"""Window assigners: which windows a record belongs to (Flink's ``WindowAssigner``).

Time windows are ``TimeWindow(start, end)`` with ``end`` exclusive and
``max_timestamp == end - 1``, as in Flink. Assignment is arithmetic on the
record's timestamp (event time) or the clock (processing time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from typing import Any

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis

from .triggers import (
    CountTrigger,
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    Trigger,
)

MAX_TIMESTAMP = 2**63 - 1


class TimeWindow(tuple[int, int]):
    """The half-open interval ``[start, end)`` of event or processing time.

    A ``(start, end)`` tuple underneath: windows are dict keys on the hot
    path, and a tuple hashes and compares in C.
    """

    __slots__ = ()

    def __new__(cls, start: int, end: int) -> TimeWindow:
        return tuple.__new__(cls, (start, end))

    def __getnewargs__(self) -> tuple[int, int]:  # so that pickle rebuilds it
        return (self[0], self[1])

    start = property(itemgetter(0), doc="The first millisecond in the window.")
    end = property(itemgetter(1), doc="The first millisecond after the window.")

    @property
    def max_timestamp(self) -> int:
        return self[1] - 1

    def intersects(self, other: TimeWindow) -> bool:
        """Overlapping or touching, which is when session windows merge."""
        return self[0] <= other[1] and self[1] >= other[0]

    def cover(self, other: TimeWindow) -> TimeWindow:
        return TimeWindow(min(self[0], other[0]), max(self[1], other[1]))

    def __repr__(self) -> str:
        return f"TimeWindow(start={self[0]}, end={self[1]})"


@dataclass(frozen=True, slots=True)
class GlobalWindow:
    """The one window of ``Global()`` and count windows; it never ends by itself."""

    @property
    def start(self) -> int:
        return -(2**63)

    @property
    def end(self) -> int:
        return MAX_TIMESTAMP

    @property
    def max_timestamp(self) -> int:
        return MAX_TIMESTAMP


GLOBAL_WINDOW = GlobalWindow()




class WindowAssigner:
    is_event_time = True
    is_merging = False
    uses_clock = False  # assigns by processing time, not by the record's timestamp

    def assign(self, value: Any, timestamp: int) -> list[Any]:
        raise NotImplementedError

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger() if self.is_event_time else ProcessingTimeTrigger()


def _positive(value: timedelta | int, what: str) -> int:
    ms = to_millis(value, what)
    if ms <= 0:
        raise StreamletConfigError(f"{what} must be positive, got {value!r}")
    return ms


class Tumbling(WindowAssigner):
    """Fixed-size, non-overlapping windows: ``[k*size + offset, (k+1)*size + offset)``."""

    def __init__(self, size: timedelta | int, offset: timedelta | int = 0, *,
                 processing_time: bool = False) -> None:
        self.size = _positive(size, "window size")
        self.offset = to_millis(offset, "window offset") % self.size
        self.is_event_time = not processing_time
        self.uses_clock = processing_time

    def assign(self, value: Any, timestamp: int) -> list[Any]:
        start = timestamp - (timestamp - self.offset) % self.size
        return [TimeWindow(start, start + self.size)]

    def __repr__(self) -> str:
        return f"Tumbling(size={self.size}, offset={self.offset})"


class Sliding(WindowAssigner):
    """Windows of ``size`` starting every ``slide``; a record is in ``size / slide`` of them."""

    def __init__(self, size: timedelta | int, slide: timedelta | int,
                 offset: timedelta | int = 0, *, processing_time: bool = False) -> None:
        self.size = _positive(size, "window size")
        self.slide = _positive(slide, "window slide")
        self.offset = to_millis(offset, "window offset") % self.slide
        self.is_event_time = not processing_time
        self.uses_clock = processing_time

    def assign(self, value: Any, timestamp: int) -> list[Any]:
        size = self.size
        slide = self.slide
        last_start = timestamp - (timestamp - self.offset) % slide
        windows = []
        start = last_start
        while start > timestamp - size:
            windows.append(TimeWindow(start, start + size))
            start -= slide
        return windows

    def __repr__(self) -> str:
        return f"Sliding(size={self.size}, slide={self.slide}, offset={self.offset})"


class Session(WindowAssigner):
    """A window per burst of activity: records closer than ``gap`` share one.

    Each record starts ``[ts, ts + gap)``; windows that overlap or touch merge.
    ``gap`` may be a function of the record (a dynamic gap, in ms or timedelta).
    """

    is_merging = True

    def __init__(self, gap: timedelta | int | Callable[[Any], timedelta | int], *,
                 processing_time: bool = False) -> None:
        self.gap_fn: Callable[[Any], timedelta | int] | None = None
        self.gap = 0
        if callable(gap):
            self.gap_fn = gap
        else:
            self.gap = _positive(gap, "session gap")
        self.is_event_time = not processing_time
        self.uses_clock = processing_time

    def assign(self, value: Any, timestamp: int) -> list[Any]:
        if self.gap_fn is None:
            return [TimeWindow(timestamp, timestamp + self.gap)]
        gap = self.gap_fn(value)
        ms = gap // timedelta(milliseconds=1) if isinstance(gap, timedelta) else gap
        if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
            raise ValueError(f"the session gap function returned {gap!r}; it must return a "
                             "positive int of milliseconds or a timedelta")
        return [TimeWindow(timestamp, timestamp + ms)]

    def __repr__(self) -> str:
        return f"Session(gap={self.gap_fn or self.gap})"


class Global(WindowAssigner):
    """All records of a key in one window, which fires only by a custom trigger."""

    is_event_time = False

    def assign(self, value: Any, timestamp: int) -> list[Any]:
        return [GLOBAL_WINDOW]

    def default_trigger(self) -> Trigger:
        return NeverTrigger()

    def __repr__(self) -> str:
        return "Global()"


class Count(Global):
    """Count windows: every ``n`` records of a key (tumbling), or with ``slide``
    the last ``n`` records every ``slide`` records (sliding)."""

    def __init__(self, n: int, slide: int | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise StreamletConfigError(f"Count(n) needs a positive int, got {n!r}")
        if slide is not None and (isinstance(slide, bool) or not isinstance(slide, int)
                                  or slide < 1):
            raise StreamletConfigError(f"Count slide must be a positive int, got {slide!r}")
        self.n = n
        self.slide = slide

    def default_trigger(self) -> Trigger:
        if self.slide is None:
            return PurgingTrigger(CountTrigger(self.n))
        return CountTrigger(self.slide)

    def __repr__(self) -> str:
        return f"Count({self.n})" if self.slide is None else f"Count({self.n}, {self.slide})"
