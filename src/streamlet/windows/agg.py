"""Ready-made aggregate functions: ``sl.agg.count()``, ``sl.agg.sum("amount")``, ...

Each is an ``AggregateFunction`` with ``merge``, so it also works on
session windows. ``field`` picks what to aggregate: a dict key or sequence
index, a function of the record, or (None) the record itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from streamlet.errors import StreamletConfigError
from streamlet.state.descriptors import AggregateFunction

Field = str | int | Callable[[Any], Any] | None


def _getter(field: Field) -> Callable[[Any], Any]:
    if field is None:
        return lambda value: value
    if callable(field):
        return field
    return lambda value: value[field]


class _Count(AggregateFunction[int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def merge(self, a: int, b: int) -> int:
        return a + b


class _Sum(AggregateFunction[Any]):
    def __init__(self, field: Field) -> None:
        self.get = _getter(field)

    def create_accumulator(self) -> Any:
        return 0

    def add(self, value: Any, accumulator: Any) -> Any:
        return accumulator + self.get(value)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


_NOTHING: Any = None


class _Extreme(AggregateFunction[Any]):
    def __init__(self, field: Field, pick: Callable[[Any, Any], Any]) -> None:
        self.get = _getter(field)
        self.pick = pick

    def create_accumulator(self) -> Any:
        return _NOTHING

    def add(self, value: Any, accumulator: Any) -> Any:
        item = self.get(value)
        return item if accumulator is _NOTHING else self.pick(accumulator, item)

    def merge(self, a: Any, b: Any) -> Any:
        if a is _NOTHING:
            return b
        return a if b is _NOTHING else self.pick(a, b)


class _Mean(AggregateFunction[tuple[Any, int]]):
    def __init__(self, field: Field) -> None:
        self.get = _getter(field)

    def create_accumulator(self) -> tuple[Any, int]:
        return (0, 0)

    def add(self, value: Any, accumulator: tuple[Any, int]) -> tuple[Any, int]:
        return (accumulator[0] + self.get(value), accumulator[1] + 1)

    def merge(self, a: tuple[Any, int], b: tuple[Any, int]) -> tuple[Any, int]:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, accumulator: tuple[Any, int]) -> Any:
        return accumulator[0] / accumulator[1] if accumulator[1] else None


class _First(AggregateFunction[Any]):
    def __init__(self, field: Field) -> None:
        self.get = _getter(field)

    def create_accumulator(self) -> Any:
        return ()

    def add(self, value: Any, accumulator: Any) -> Any:
        return accumulator or (self.get(value),)

    def merge(self, a: Any, b: Any) -> Any:
        return a or b

    def get_result(self, accumulator: Any) -> Any:
        return accumulator[0] if accumulator else None


class _Last(_First):
    def add(self, value: Any, accumulator: Any) -> Any:
        return (self.get(value),)

    def merge(self, a: Any, b: Any) -> Any:
        return b or a


class _CollectList(AggregateFunction[list[Any]]):
    def __init__(self, field: Field) -> None:
        self.get = _getter(field)

    def create_accumulator(self) -> list[Any]:
        return []

    def add(self, value: Any, accumulator: list[Any]) -> list[Any]:
        accumulator.append(self.get(value))
        return accumulator

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return a + b

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        return list(accumulator)  # a copy: the accumulator keeps growing after a firing


class _TopK(AggregateFunction[list[Any]]):
    def __init__(self, k: int, field: Field, by: Callable[[Any], Any] | None) -> None:
        self.k = k
        self.get = _getter(field)
        self.by = by

    def create_accumulator(self) -> list[Any]:
        return []

    def add(self, value: Any, accumulator: list[Any]) -> list[Any]:
        accumulator.append(self.get(value))
        return self._trim(accumulator)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return self._trim(a + b)

    def _trim(self, items: list[Any]) -> list[Any]:
        return heapq.nlargest(self.k, items, key=self.by)

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        return list(accumulator)  # a copy: the accumulator changes after a firing


def count() -> AggregateFunction[int]:
    """How many records."""
    return _Count()


def sum(field: Field = None) -> AggregateFunction[Any]:  # sl.agg.sum reads best
    """The sum of ``field``."""
    return _Sum(field)


def min(field: Field = None) -> AggregateFunction[Any]:
    """The smallest ``field``."""
    return _Extreme(field, lambda a, b: b if b < a else a)


def max(field: Field = None) -> AggregateFunction[Any]:
    """The largest ``field``."""
    return _Extreme(field, lambda a, b: b if b > a else a)


def mean(field: Field = None) -> AggregateFunction[Any]:
    """The arithmetic mean of ``field`` (None for an empty window)."""
    return _Mean(field)


def first(field: Field = None) -> AggregateFunction[Any]:
    """``field`` of the first record to arrive."""
    return _First(field)


def last(field: Field = None) -> AggregateFunction[Any]:
    """``field`` of the last record to arrive."""
    return _Last(field)


def collect_list(field: Field = None) -> AggregateFunction[list[Any]]:
    """Every ``field``, in arrival order."""
    return _CollectList(field)


def top_k(k: int, field: Field = None, *, by: Callable[[Any], Any] | None = None
          ) -> AggregateFunction[list[Any]]:
    """The ``k`` largest ``field`` values (compared by ``by`` when given), largest first."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise StreamletConfigError(f"top_k needs a positive int k, got {k!r}")
    return _TopK(k, field, by)
