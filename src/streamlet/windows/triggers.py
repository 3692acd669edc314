"""Triggers decide when a window's contents are emitted (Flink's ``Trigger``).

A trigger is called for every record added to a window, for every timer it
set, when windows merge, and when a window is cleared; each call answers
with a ``TriggerResult``. Triggers keep per-window state through the
context (``ctx.get_state`` / ``ctx.set_state``), so a ``CountTrigger``
counts each window on its own.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any, Protocol

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis


class TriggerResult(enum.Enum):
    CONTINUE = "continue"
    FIRE = "fire"
    PURGE = "purge"
    FIRE_AND_PURGE = "fire_and_purge"

    @property
    def fires(self) -> bool:
        return self is TriggerResult.FIRE or self is TriggerResult.FIRE_AND_PURGE

    @property
    def purges(self) -> bool:
        return self is TriggerResult.PURGE or self is TriggerResult.FIRE_AND_PURGE


CONTINUE = TriggerResult.CONTINUE
FIRE = TriggerResult.FIRE
PURGE = TriggerResult.PURGE
FIRE_AND_PURGE = TriggerResult.FIRE_AND_PURGE


class TriggerContext(Protocol):
    """What a trigger may do, scoped to the current key and window."""

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...

    def register_event_time_timer(self, time: int) -> None: ...

    def register_processing_time_timer(self, time: int) -> None: ...

    def delete_event_time_timer(self, time: int) -> None: ...

    def delete_processing_time_timer(self, time: int) -> None: ...

    def get_state(self, name: str, default: Any = None) -> Any: ...

    def set_state(self, name: str, value: Any) -> None: ...


class Trigger:
    """Subclass to decide yourself when windows fire."""

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        return CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return CONTINUE

    def can_merge(self) -> bool:
        return False

    def merge_state(self, name: str, a: Any, b: Any) -> Any:
        """Combine the values two merging windows kept under ``name``; the merged
        window's state holds the result when ``on_merge`` runs (Flink's
        ``mergePartitionedState``). By default ints add up (counts) and any
        other value is the later window's."""
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        return b

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        raise StreamletConfigError(f"{type(self).__name__} cannot be used with merging windows")

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """The window is gone: delete the timers and state this trigger kept for it."""


class EventTimeTrigger(Trigger):
    """Fire once the watermark passes the window's end (the event-time default)."""

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp <= ctx.current_watermark():
            return FIRE  # a late record within the allowed lateness: fire again at once
        ctx.register_event_time_timer(window.max_timestamp)
        return CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return FIRE if time == window.max_timestamp else CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        if window.max_timestamp > ctx.current_watermark():
            ctx.register_event_time_timer(window.max_timestamp)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp)

    def __repr__(self) -> str:
        return "EventTimeTrigger()"


class ProcessingTimeTrigger(Trigger):
    """Fire once the clock passes the window's end (the processing-time default)."""

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp)
        return CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return FIRE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        if window.max_timestamp > ctx.current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp)

    def __repr__(self) -> str:
        return "ProcessingTimeTrigger()"


class CountTrigger(Trigger):
    """Fire every ``n`` records of a window."""

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise StreamletConfigError(f"CountTrigger needs a positive int, got {n!r}")
        self.n = n

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        count = ctx.get_state("count", 0) + 1
        if count >= self.n:
            ctx.set_state("count", 0)
            return FIRE
        ctx.set_state("count", count)
        return CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        return None  # merge_state has added the merged windows' counts

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.set_state("count", None)

    def __repr__(self) -> str:
        return f"CountTrigger({self.n})"


class ContinuousEventTimeTrigger(Trigger):
    """Fire every ``interval`` of event time while the window is open, and at its end."""

    def __init__(self, interval: timedelta | int) -> None:
        self.interval = to_millis(interval, "interval")
        if self.interval <= 0:
            raise StreamletConfigError("interval must be positive")

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp <= ctx.current_watermark():
            return FIRE
        ctx.register_event_time_timer(window.max_timestamp)
        if ctx.get_state("next") is None:
            start = timestamp - timestamp % self.interval
            next_fire = start + self.interval
            ctx.register_event_time_timer(next_fire)
            ctx.set_state("next", next_fire)
        return CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if time == window.max_timestamp:
            return FIRE
        if ctx.get_state("next") == time:
            ctx.set_state("next", time + self.interval)
            ctx.register_event_time_timer(time + self.interval)
            return FIRE
        return CONTINUE

    def can_merge(self) -> bool:
        return True

    def merge_state(self, name: str, a: Any, b: Any) -> Any:
        return min(a, b)  # the earliest next firing of the merged windows

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        next_fire = ctx.get_state("next")
        if next_fire is not None:
            ctx.register_event_time_timer(next_fire)
        if window.max_timestamp > ctx.current_watermark():
            ctx.register_event_time_timer(window.max_timestamp)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        next_fire = ctx.get_state("next")
        if next_fire is not None:
            ctx.delete_event_time_timer(next_fire)
        ctx.set_state("next", None)
        ctx.delete_event_time_timer(window.max_timestamp)

    def __repr__(self) -> str:
        return f"ContinuousEventTimeTrigger({self.interval})"


class ContinuousProcessingTimeTrigger(Trigger):
    """Fire every ``interval`` of processing time while the window holds records,
    at multiples of ``interval`` on the job's clock, and last at the window's
    max timestamp (on ``Global()`` windows: forever), as Flink's does."""

    def __init__(self, interval: timedelta | int) -> None:
        self.interval = to_millis(interval, "interval")
        if self.interval <= 0:
            raise StreamletConfigError("interval must be positive")

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        if ctx.get_state("next") is None:
            now = ctx.current_processing_time()
            self._register_next(now - now % self.interval, window, ctx)
        return CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if ctx.get_state("next") != time:
            return CONTINUE
        ctx.set_state("next", None)
        if time < window.max_timestamp:
            self._register_next(time, window, ctx)
        return FIRE

    def _register_next(self, time: int, window: Any, ctx: TriggerContext) -> None:
        next_fire = min(time + self.interval, window.max_timestamp)
        ctx.set_state("next", next_fire)
        ctx.register_processing_time_timer(next_fire)

    def can_merge(self) -> bool:
        return True

    def merge_state(self, name: str, a: Any, b: Any) -> Any:
        return min(a, b)

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        next_fire = ctx.get_state("next")
        if next_fire is not None:
            ctx.register_processing_time_timer(next_fire)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        next_fire = ctx.get_state("next")
        if next_fire is not None:
            ctx.delete_processing_time_timer(next_fire)
        ctx.set_state("next", None)

    def __repr__(self) -> str:
        return f"ContinuousProcessingTimeTrigger({self.interval})"


class PurgingTrigger(Trigger):
    """Turns every FIRE of the wrapped trigger into FIRE_AND_PURGE."""

    def __init__(self, inner: Trigger) -> None:
        self.inner = inner

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return FIRE_AND_PURGE if result.fires else result

    def on_element(self, value: Any, timestamp: int, window: Any,
                   ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.inner.on_element(value, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.inner.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.inner.on_processing_time(time, window, ctx))

    def can_merge(self) -> bool:
        return self.inner.can_merge()

    def merge_state(self, name: str, a: Any, b: Any) -> Any:
        return self.inner.merge_state(name, a, b)

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        self.inner.on_merge(window, ctx)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        self.inner.clear(window, ctx)

    def __repr__(self) -> str:
        return f"PurgingTrigger({self.inner!r})"


class NeverTrigger(Trigger):
    """The ``Global()`` default: never fires; give the window a trigger of its own."""

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        return None

    def __repr__(self) -> str:
        return "NeverTrigger()"
