"""The process functions users subclass, and the context they are handed.

``process(value, ctx)`` may emit by ``yield``-ing (a generator), by
``return``-ing one value (``None`` emits nothing), or by ``ctx.emit(v)``; it
may also be ``async def`` (then its calls run one after another). ``ctx``
carries the current key, the record's timestamp, side outputs and, on keyed
streams, the timers.
"""

from __future__ import annotations

import heapq
from typing import Any

from streamlet.errors import InvalidTimestampError, StreamletError
from streamlet.state.descriptors import NO_KEY, KeyRef
from streamlet.time.timers import TimerQueue


class ProcessFunction:
    """A function over a stream that is not keyed: no keyed state, no timers."""

    def open(self) -> None:
        """Called once before the first record of a run."""

    def process(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def on_timer(self, timestamp: int, ctx: Context) -> Any:
        """Timers need a key; on a keyed stream a ProcessFunction may set them too."""
        return None

    def close(self) -> None:
        """Called once when the run stops."""


class KeyedProcessFunction:
    """A function over a keyed stream, with keyed state and timers.

    Declare state as class attributes (``seen = sl.ValueState("seen")``);
    inside ``process`` and ``on_timer`` it is scoped to the current key.
    """

    def open(self) -> None:
        """Called once before the first record of a run; state is usable from here
        on only inside ``process`` and ``on_timer``."""

    def process(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def on_timer(self, timestamp: int, ctx: Context) -> Any:
        """A timer registered for the current key fired; emit as from ``process``."""
        return None

    def close(self) -> None:
        """Called once when the run stops."""


class CoProcessFunction:
    """A function over two connected keyed streams sharing keyed state and timers."""

    def open(self) -> None:
        """Called once before the first record of a run."""

    def process_element1(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def process_element2(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def on_timer(self, timestamp: int, ctx: Context) -> Any:
        return None

    def close(self) -> None:
        """Called once when the run stops."""


EVENT_TIME = "event_time"
PROCESSING_TIME = "processing_time"


class TimerService:
    """``ctx.timers``: timers of the current key, and the operator's clocks."""

    __slots__ = ("_event", "_key_ref", "_operator", "_processing")

    def __init__(self, operator: Any, key_ref: KeyRef, event: TimerQueue,
                 processing: TimerQueue) -> None:
        self._operator = operator
        self._key_ref = key_ref
        self._event = event
        self._processing = processing

    def _key(self) -> Any:
        key = self._key_ref.key
        if key is NO_KEY:
            raise StreamletError("timers belong to a key: use them inside process() or "
                                 "on_timer() of a function on a keyed stream")
        return key

    def register_event_time(self, timestamp: int) -> None:
        """Call ``on_timer`` when the watermark reaches ``timestamp``."""
        key = self._key_ref.key
        if type(timestamp) is not int or key is NO_KEY:
            self._refuse(timestamp)
        queue = self._event  # TimerQueue.register, inlined: this runs per record
        bucket = queue.buckets.get(timestamp)
        if bucket is None:
            queue.buckets[timestamp] = {key: None}
            heapq.heappush(queue.heap, timestamp)
        elif key not in bucket:
            bucket[key] = None

    def _refuse(self, timestamp: Any) -> None:
        if type(timestamp) is not int:
            raise InvalidTimestampError(
                self._operator.name, f"a timer time must be int milliseconds, not {timestamp!r}")
        self._key()

    def register_processing_time(self, timestamp: int) -> None:
        """Call ``on_timer`` when the job's clock reaches ``timestamp``."""
        if type(timestamp) is not int:
            raise InvalidTimestampError(
                self._operator.name, f"a timer time must be int milliseconds, not {timestamp!r}")
        if self._processing.register(self._key(), timestamp):
            self._operator.processing_timer_added(timestamp)

    def delete_event_time(self, timestamp: int) -> None:
        self._event.delete(self._key(), timestamp)

    def delete_processing_time(self, timestamp: int) -> None:
        self._processing.delete(self._key(), timestamp)

    def current_watermark(self) -> int:
        watermark: int = self._operator.watermark
        return watermark

    def current_processing_time(self) -> int:
        now: int = self._operator.clock.now()
        return now


class Context:
    """What ``process`` and ``on_timer`` are handed (Flink's ``Context``).

    ``ctx.key`` is the key of the record or timer being processed (None on a
    stream that is not keyed); ``ctx.timestamp`` is the record's event time
    (in ``on_timer``, the timer's time). On a record that has no timestamp,
    reading ``ctx.timestamp`` raises ``InvalidTimestampError``. Both are
    plain attributes the operator sets per record, so reading them is free.
    """

    __slots__ = ("_operator", "_out", "_side", "key", "time_domain", "timers")
    has_timestamp = True

    def __init__(self, operator: str, timers: TimerService | None) -> None:
        self._operator = operator
        self.key: Any = None
        self._out: list[Any] = []
        self._side: dict[str, list[Any]] = {}
        self.timers = timers
        self.time_domain: str | None = None  # in on_timer: EVENT_TIME or PROCESSING_TIME

    def emit(self, value: Any) -> None:
        """Send ``value`` downstream, after anything emitted before it."""
        self._out.append(value)

    def output(self, tag: str, value: Any) -> None:
        """Send ``value`` to the side output ``tag`` (read with ``stream.side_output(tag)``)."""
        side = self._side.get(tag)
        if side is None:
            side = self._side[tag] = []
        side.append((value, self.timestamp if self.has_timestamp else None))

    timestamp: Any


class TimedContext(Context):
    """The context of records that carry event time."""

    __slots__ = ("timestamp",)

    def __init__(self, operator: str, timers: TimerService | None) -> None:
        super().__init__(operator, timers)
        self.timestamp: Any = None


class UntimedContext(Context):
    """The context of records without event time."""

    __slots__ = ()
    has_timestamp = False

    @property  # the same name as the slot, raising: that is the point
    def timestamp(self) -> int:
        raise InvalidTimestampError(
            self._operator, "this record has no timestamp; give the stream event time with "
            "assign_timestamps(...) upstream, or use processing time")
