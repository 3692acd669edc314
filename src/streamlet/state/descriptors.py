"""State descriptors and the handles a running function uses.

A descriptor is declared as a class attribute of a keyed function::

    class Dedup(sl.KeyedProcessFunction):
        seen = sl.ValueState("seen", default=False, ttl=timedelta(hours=1))

When the operator opens, it puts a *handle* for each descriptor on the
function instance (shadowing the descriptor), bound to one table of the
operator's state backend and to the operator's current key. Every handle
method is therefore scoped to the key of the record or timer being
processed, and touches one table entry. Outside a keyed context (no current
key) a handle raises ``StateAccessError`` rather than guess.

TTL is measured in processing time, from the job's clock, and applies to a
key's whole entry (for ``ListState`` and ``MapState`` too, where Flink times
each element): an expired entry is never returned, and is dropped when met.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Final, Generic, TypeVar

from streamlet.errors import StateAccessError, StreamletConfigError
from streamlet.time.clock import Clock
from streamlet.time.durations import to_millis

from .backend import StateTable

A = TypeVar("A")
_MISSING: Any = object()
TTL_UPDATES = ("on_write", "on_read_and_write")


class NoCurrentKey(Exception):
    """Raised by hashing ``NO_KEY``: a state table was used with no current key."""


class _NoKey:
    """The current key outside keyed processing. It cannot be hashed, so any
    table lookup with it fails at once; the handles turn that into a clear
    ``StateAccessError`` without checking the key on every call."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_KEY"

    def __hash__(self) -> int:
        raise NoCurrentKey()


NO_KEY: Final = _NoKey()


class KeyRef:
    """The current key of a keyed operator, shared by all its state handles."""

    __slots__ = ("key",)

    def __init__(self) -> None:
        self.key: Any = NO_KEY


class AggregateFunction(Generic[A]):
    """Flink's incremental aggregation: an accumulator per key (or window).

    Used by ``AggregatingState`` and by window ``aggregate``; ``merge`` is
    needed where accumulators combine (session windows).
    """

    def create_accumulator(self) -> A:
        raise NotImplementedError

    def add(self, value: Any, accumulator: A) -> A:
        raise NotImplementedError

    def merge(self, a: A, b: A) -> A:
        raise NotImplementedError

    def get_result(self, accumulator: A) -> Any:
        return accumulator


# -- handles ------------------------------------------------------------------------


class _Handle:
    __slots__ = ("_kr", "_table", "name")

    def __init__(self, name: str, table: StateTable, key_ref: KeyRef) -> None:
        self.name = name
        self._table = table
        self._kr = key_ref

    def _key(self) -> Any:
        key = self._kr.key
        if key is NO_KEY:
            raise StateAccessError(self.name)
        return key

    def clear(self) -> None:
        """Forget this key's state."""
        key = self._kr.key
        if key is NO_KEY:  # dict.pop on an empty dict would not even hash it
            raise StateAccessError(self.name)
        self._table.pop(key, None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


_IMMUTABLE = (int, float, str, bytes, bool, type(None), tuple, frozenset, complex)


class ValueStateHandle(_Handle):
    __slots__ = ("_default",)

    def __init__(self, name: str, table: StateTable, key_ref: KeyRef, default: Any) -> None:
        super().__init__(name, table, key_ref)
        self._default = default

    def value(self) -> Any:
        try:
            return self._table.get(self._kr.key, self._default)
        except NoCurrentKey:
            raise StateAccessError(self.name) from None

    def update(self, value: Any) -> None:
        try:
            self._table[self._kr.key] = value
        except NoCurrentKey:
            raise StateAccessError(self.name) from None


class _MutableDefaultValueStateHandle(ValueStateHandle):
    """Every key gets its own copy of a mutable default, as in Flink."""

    __slots__ = ()

    def value(self) -> Any:
        try:
            found = self._table.get(self._kr.key, _MISSING)
        except NoCurrentKey:
            raise StateAccessError(self.name) from None
        return copy.deepcopy(self._default) if found is _MISSING else found


class ListStateHandle(_Handle):
    __slots__ = ()

    def get(self) -> list[Any]:
        """A copy of this key's list (empty when there is none)."""
        return list(self._table.get(self._key(), ()))

    def add(self, value: Any) -> None:
        key = self._key()
        items = self._table.get(key)
        if items is None:
            items = [value]
        else:
            items.append(value)
        self._table[key] = items

    def add_all(self, values: Iterable[Any]) -> None:
        key = self._key()
        items = self._table.get(key) or []
        items.extend(values)
        if items:
            self._table[key] = items

    def update(self, values: Iterable[Any]) -> None:
        key = self._key()
        items = list(values)
        if items:
            self._table[key] = items
        else:
            self._table.pop(key, None)


class MapStateHandle(_Handle):
    __slots__ = ()

    def _map(self) -> dict[Any, Any]:
        found: dict[Any, Any] = self._table.get(self._key()) or {}
        return found

    def get(self, user_key: Any, default: Any = None) -> Any:
        return self._map().get(user_key, default)

    def put(self, user_key: Any, value: Any) -> None:
        key = self._key()
        entries = self._table.get(key)
        if entries is None:
            entries = {}
        entries[user_key] = value
        self._table[key] = entries

    def put_all(self, entries: dict[Any, Any]) -> None:
        for user_key, value in entries.items():
            self.put(user_key, value)

    def contains(self, user_key: Any) -> bool:
        return user_key in self._map()

    def remove(self, user_key: Any) -> None:
        key = self._key()
        entries = self._table.get(key)
        if entries is not None and user_key in entries:
            del entries[user_key]
            if entries:
                self._table[key] = entries
            else:
                self._table.pop(key, None)

    def keys(self) -> list[Any]:
        return list(self._map())

    def values(self) -> list[Any]:
        return list(self._map().values())

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._map().items())

    def is_empty(self) -> bool:
        return not self._map()


class ReducingStateHandle(_Handle):
    __slots__ = ("_fn",)

    def __init__(self, name: str, table: StateTable, key_ref: KeyRef,
                 fn: Callable[[Any, Any], Any]) -> None:
        super().__init__(name, table, key_ref)
        self._fn = fn

    def get(self) -> Any:
        return self._table.get(self._key())

    def add(self, value: Any) -> None:
        key = self._key()
        acc = self._table.get(key, _MISSING)
        self._table[key] = value if acc is _MISSING else self._fn(acc, value)


class AggregatingStateHandle(_Handle):
    __slots__ = ("_agg",)

    def __init__(self, name: str, table: StateTable, key_ref: KeyRef,
                 agg: AggregateFunction[Any]) -> None:
        super().__init__(name, table, key_ref)
        self._agg = agg

    def get(self) -> Any:
        acc = self._table.get(self._key(), _MISSING)
        return None if acc is _MISSING else self._agg.get_result(acc)

    def add(self, value: Any) -> None:
        key = self._key()
        acc = self._table.get(key, _MISSING)
        if acc is _MISSING:
            acc = self._agg.create_accumulator()
        self._table[key] = self._agg.add(value, acc)


# -- TTL ------------------------------------------------------------------------------


class TtlTable(StateTable):
    """A table whose entries expire ``ttl_ms`` of processing time after they
    were written (or, with ``refresh_on_read``, last read)."""

    def __init__(self, inner: StateTable, ttl_ms: int, clock: Clock,
                 refresh_on_read: bool) -> None:
        self.inner = inner
        self.ttl_ms = ttl_ms
        self.clock = clock
        self.refresh_on_read = refresh_on_read

    def _live(self, key: Any) -> Any:
        entry = self.inner.get(key)
        if entry is None:
            return _MISSING
        now = self.clock.now()
        if entry[1] <= now:
            del self.inner[key]
            return _MISSING
        if self.refresh_on_read:
            self.inner[key] = (entry[0], now + self.ttl_ms)
        return entry[0]

    def __getitem__(self, key: Any) -> Any:
        value = self._live(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._live(key)
        return default if value is _MISSING else value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.inner[key] = (value, self.clock.now() + self.ttl_ms)

    def __delitem__(self, key: Any) -> None:
        del self.inner[key]

    def pop(self, key: Any, default: Any = None) -> Any:
        entry = self.inner.pop(key, None)
        if entry is None or entry[1] <= self.clock.now():
            return default
        return entry[0]

    def __contains__(self, key: object) -> bool:
        return self._live(key) is not _MISSING

    def __iter__(self) -> Any:
        now = self.clock.now()
        return iter([k for k, (_, expires) in self.inner.items() if expires > now])

    def __len__(self) -> int:
        return len(self.inner)


# -- descriptors ----------------------------------------------------------------------


class StateDescriptor:
    """Declares a piece of keyed state by name; see the module docstring."""

    def __init__(self, name: str, *, ttl: timedelta | int | None = None,
                 ttl_update: str = "on_write") -> None:
        if not isinstance(name, str) or not name:
            raise StreamletConfigError(f"a state name is a non-empty str, not {name!r}")
        if ttl_update not in TTL_UPDATES:
            raise StreamletConfigError(
                f"state {name!r}: ttl_update={ttl_update!r}; choose 'on_write' or "
                "'on_read_and_write'")
        self.name = name
        self.ttl_ms = None if ttl is None else to_millis(ttl, f"state {name!r} ttl")
        if self.ttl_ms == 0:
            raise StreamletConfigError(f"state {name!r}: ttl must be positive")
        self.ttl_update = ttl_update
        self.attribute: str | None = None

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        raise StateAccessError(self.name)

    def bind(self, table: StateTable, key_ref: KeyRef, clock: Clock) -> _Handle:
        if self.ttl_ms is not None:
            table = TtlTable(table, self.ttl_ms, clock, self.ttl_update == "on_read_and_write")
        return self._handle(table, key_ref)

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueState(StateDescriptor):
    """One value per key: ``value()``, ``update(v)``, ``clear()``."""

    def __init__(self, name: str, default: Any = None, *, ttl: timedelta | int | None = None,
                 ttl_update: str = "on_write") -> None:
        super().__init__(name, ttl=ttl, ttl_update=ttl_update)
        self.default = default

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        if isinstance(self.default, _IMMUTABLE):
            return ValueStateHandle(self.name, table, key_ref, self.default)
        return _MutableDefaultValueStateHandle(self.name, table, key_ref, self.default)


class ListState(StateDescriptor):
    """A list per key: ``get()``, ``add(v)``, ``add_all(vs)``, ``update(vs)``, ``clear()``."""

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        return ListStateHandle(self.name, table, key_ref)


class MapState(StateDescriptor):
    """A dict per key: ``get``/``put``/``contains``/``remove``/``keys``/``values``/``items``."""

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        return MapStateHandle(self.name, table, key_ref)


class ReducingState(StateDescriptor):
    """A running ``reduce_fn(acc, v)`` per key: ``add(v)``, ``get()``, ``clear()``."""

    def __init__(self, name: str, reduce_fn: Callable[[Any, Any], Any], *,
                 ttl: timedelta | int | None = None, ttl_update: str = "on_write") -> None:
        super().__init__(name, ttl=ttl, ttl_update=ttl_update)
        if not callable(reduce_fn):
            raise StreamletConfigError(f"state {name!r}: reduce_fn must be callable")
        self.reduce_fn = reduce_fn

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        return ReducingStateHandle(self.name, table, key_ref, self.reduce_fn)


class AggregatingState(StateDescriptor):
    """An ``AggregateFunction`` accumulator per key: ``add(v)``, ``get()``, ``clear()``."""

    def __init__(self, name: str, agg: AggregateFunction[Any], *,
                 ttl: timedelta | int | None = None, ttl_update: str = "on_write") -> None:
        super().__init__(name, ttl=ttl, ttl_update=ttl_update)
        if not isinstance(agg, AggregateFunction):
            raise StreamletConfigError(
                f"state {name!r}: agg must be an sl.AggregateFunction, not {agg!r}")
        self.agg = agg

    def _handle(self, table: StateTable, key_ref: KeyRef) -> _Handle:
        return AggregatingStateHandle(self.name, table, key_ref, self.agg)


def descriptors_of(function: object) -> dict[str, StateDescriptor]:
    """The state a function declares, by attribute name, base classes included."""
    found: dict[str, StateDescriptor] = {}
    for klass in reversed(type(function).__mro__):
        for attribute, value in vars(klass).items():
            if isinstance(value, StateDescriptor):
                found[attribute] = value
    names = [d.name for d in found.values()]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise StreamletConfigError(
            f"{type(function).__name__} declares state named {sorted(duplicates)} twice; "
            "state names must be unique within a function")
    return found
