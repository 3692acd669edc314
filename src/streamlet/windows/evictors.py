"""Evictors remove records from a window before or after its function runs
(Flink's ``Evictor``). A window with an evictor keeps its records, not an
accumulator, so that there is something to evict."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis

Element = tuple[Any, int]  # (value, timestamp)


class Evictor:
    """Subclass to decide which of a window's ``(value, timestamp)`` pairs stay."""

    def evict_before(self, elements: list[Element], window: Any) -> list[Element]:
        return elements

    def evict_after(self, elements: list[Element], window: Any) -> list[Element]:
        return elements


class CountEvictor(Evictor):
    """Keep only the last ``n`` records (before the function runs, unless ``after``)."""

    def __init__(self, n: int, *, after: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise StreamletConfigError(f"CountEvictor needs a positive int, got {n!r}")
        self.n = n
        self.after = after

    def _keep(self, elements: list[Element]) -> list[Element]:
        return elements[-self.n:]

    def evict_before(self, elements: list[Element], window: Any) -> list[Element]:
        return elements if self.after else self._keep(elements)

    def evict_after(self, elements: list[Element], window: Any) -> list[Element]:
        return self._keep(elements) if self.after else elements


class TimeEvictor(Evictor):
    """Keep only records within ``size`` of the window's newest timestamp."""

    def __init__(self, size: timedelta | int, *, after: bool = False) -> None:
        self.size = to_millis(size, "TimeEvictor size")
        if self.size <= 0:
            raise StreamletConfigError(f"TimeEvictor size must be positive, got {size!r}")
        self.after = after

    def _keep(self, elements: list[Element]) -> list[Element]:
        if not elements:
            return elements
        newest = max(ts for _, ts in elements)
        return [e for e in elements if e[1] > newest - self.size]

    def evict_before(self, elements: list[Element], window: Any) -> list[Element]:
        return elements if self.after else self._keep(elements)

    def evict_after(self, elements: list[Element], window: Any) -> list[Element]:
        return self._keep(elements) if self.after else elements
