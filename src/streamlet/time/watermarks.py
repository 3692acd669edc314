"""Watermark strategies: how far event time has got, judged from the records.

A strategy is a frozen value; each source split gets its own generator built
from it, so one slow Kafka partition holds the watermark back and an idle one
(with ``with_idleness``) does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis

MIN_TIMESTAMP = -(2**63)


class WatermarkGenerator:
    """Flink's ``WatermarkGenerator``: sees every record's timestamp and says
    how far event time has got.

    Subclass it for a custom strategy (``WatermarkStrategy.for_generator``).
    ``on_event`` may return a watermark at once (a punctuated watermark);
    ``on_periodic_emit`` is asked after every batch.
    """

    def on_event(self, value: Any, timestamp: int) -> int | None:
        return None

    def on_periodic_emit(self) -> int | None:
        return None

    def on_batch(self, values: Sequence[Any], timestamps: Sequence[int]) -> int | None:
        """All of a batch at once; the default calls ``on_event`` per record."""
        best: int | None = None
        for value, ts in zip(values, timestamps, strict=True):
            wm = self.on_event(value, ts)
            if wm is not None and (best is None or wm > best):
                best = wm
        return best


class BoundedOutOfOrderness(WatermarkGenerator):
    """Watermark = highest timestamp seen - bound - 1 ms, as in Flink, so a
    record exactly ``bound`` behind the highest is still on time."""

    def __init__(self, bound_ms: int) -> None:
        self.bound_ms = bound_ms
        self.highest = MIN_TIMESTAMP + bound_ms + 1

    def on_event(self, value: Any, timestamp: int) -> int | None:
        self.highest = max(self.highest, timestamp)
        return None

    def on_batch(self, values: Sequence[Any], timestamps: Sequence[int]) -> int | None:
        if timestamps:
            top = max(timestamps)
            self.highest = max(self.highest, top)
        return None

    def on_periodic_emit(self) -> int | None:
        return self.highest - self.bound_ms - 1


@dataclass(frozen=True)
class WatermarkStrategy:
    """How a stream's watermarks are made; build one with the class methods.

    >>> WatermarkStrategy.bounded_out_of_orderness(timedelta(seconds=2)).with_idleness(30_000)
    WatermarkStrategy(out_of_orderness_ms=2000, idleness_ms=30000, generator=None)
    """

    out_of_orderness_ms: int = 0
    idleness_ms: int | None = None
    generator: Callable[[], WatermarkGenerator] | None = None

    def __post_init__(self) -> None:
        if self.idleness_ms is not None and self.idleness_ms <= 0:
            raise StreamletConfigError("idleness must be positive")

    @classmethod
    def for_monotonous_timestamps(cls) -> WatermarkStrategy:
        """Timestamps never decrease: the watermark trails the latest by 1 ms."""
        return cls(0)

    @classmethod
    def bounded_out_of_orderness(cls, bound: timedelta | int) -> WatermarkStrategy:
        """Records arrive at most ``bound`` behind the highest timestamp seen."""
        return cls(to_millis(bound, "bounded_out_of_orderness"))

    @classmethod
    def for_generator(cls, factory: Callable[[], WatermarkGenerator]) -> WatermarkStrategy:
        """A custom strategy: ``factory()`` builds one generator per source split."""
        if not callable(factory):
            raise StreamletConfigError("for_generator() takes a factory of WatermarkGenerator")
        return cls(0, None, factory)

    def with_idleness(self, timeout: timedelta | int) -> WatermarkStrategy:
        """A split with no records for ``timeout`` of processing time stops
        holding the watermark back until it has records again."""
        return dataclasses.replace(self, idleness_ms=to_millis(timeout, "with_idleness"))

    def create_generator(self) -> WatermarkGenerator:
        if self.generator is not None:
            made = self.generator()
            if not isinstance(made, WatermarkGenerator):
                raise StreamletConfigError(
                    f"the watermark generator factory returned {made!r}, "
                    "not a WatermarkGenerator")
            return made
        return BoundedOutOfOrderness(self.out_of_orderness_ms)
