"""One contract for every keyed state backend, and what only SQLite promises.

Every test taking the ``backend`` fixture runs against the memory backend
and against SQLite with a three-entry cache, so entries are evicted to the
file and read back all the time: whatever the memory backend does, the
SQLite backend must do the same, however small its cache.
"""

from __future__ import annotations

import os
import pickle
import random
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlet.errors import InvalidKeyError, StateAccessError, StreamletConfigError
from streamlet.state.backend import KeyedStateBackend, MemoryStateBackend, StateBackendFactory
from streamlet.state.descriptors import (
    NO_KEY,
    AggregateFunction,
    AggregatingState,
    AggregatingStateHandle,
    KeyRef,
    ListState,
    ListStateHandle,
    MapState,
    MapStateHandle,
    ReducingState,
    ReducingStateHandle,
    StateDescriptor,
    TtlTable,
    ValueState,
    ValueStateHandle,
)
from streamlet.state.keys import key_group
from streamlet.state.sqlite import SQLiteState, SQLiteStateBackend
from streamlet.time.clock import ManualClock

SMALL_CACHE = 3


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyedStateBackend]:
    made: KeyedStateBackend
    if request.param == "memory":
        made = MemoryStateBackend()
    else:
        made = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=SMALL_CACHE)
    yield made
    made.close()


def _bind(descriptor: StateDescriptor, backend: KeyedStateBackend,
          clock: ManualClock | None = None, key_ref: KeyRef | None = None) -> tuple[Any, KeyRef]:
    key_ref = key_ref or KeyRef()
    handle = descriptor.bind(backend.table(descriptor.name), key_ref, clock or ManualClock())
    return handle, key_ref


# -- tables ----------------------------------------------------------------------------


def test_a_table_is_a_mapping(backend: KeyedStateBackend) -> None:
    t = backend.table("t")
    assert len(t) == 0
    assert t.get("a") is None
    assert t.get("a", 7) == 7
    assert "a" not in t
    with pytest.raises(KeyError):
        t["a"]
    for i in range(10):  # more than the SQLite cache holds
        t[f"k{i}"] = i
    t["a"] = [1, 2]
    assert t["a"] == [1, 2]
    assert "a" in t
    assert len(t) == 11
    assert t.get("k0") == 0
    t["k0"] = "changed"
    assert t["k0"] == "changed"
    assert t.pop("k1") == 1
    assert t.pop("k1", "gone") == "gone"
    with pytest.raises(KeyError):
        t.pop("k1")
    del t["k2"]
    with pytest.raises(KeyError):
        del t["k2"]
    assert "k2" not in t
    expected = {"a": [1, 2], "k0": "changed", **{f"k{i}": i for i in range(3, 10)}}
    assert dict(t.items()) == expected
    assert sorted(t.keys()) == sorted(expected)
    assert sorted(map(repr, t.values())) == sorted(map(repr, expected.values()))
    assert sorted(t) == sorted(expected)
    assert len(t) == len(expected)


def test_none_is_a_value_like_any_other(backend: KeyedStateBackend) -> None:
    t = backend.table("t")
    t["k"] = None
    for i in range(5):
        t[i] = i
    assert "k" in t
    assert t.get("k", "default") is None
    assert t.pop("k", "default") is None
    assert "k" not in t


def test_tables_are_independent(backend: KeyedStateBackend) -> None:
    a, b = backend.table("a"), backend.table("b")
    assert backend.table("a") is a
    for i in range(6):
        a[i] = f"a{i}"
        b[i] = f"b{i}"
    del b[0]
    assert dict(a.items()) == {i: f"a{i}" for i in range(6)}
    assert dict(b.items()) == {i: f"b{i}" for i in range(1, 6)}
    assert set(backend.tables()) == {"a", "b"}


def test_clear_empties_a_table(backend: KeyedStateBackend) -> None:
    t = backend.table("t")
    for i in range(8):
        t[i] = i
    t.clear()
    assert len(t) == 0
    assert t.get(1) is None
    t[1] = "again"
    assert dict(t.items()) == {1: "again"}


KEYS: list[Any] = [
    "", "user-42", "ключ", "\ud800", b"", b"\x00\xff", 0, -1, 2**70, -(2**70), 3.5, -0.25,
    float("inf"), None, ("a", 1), ("a", (1, None, b"x")), (), (("nested",),),
]


def test_every_supported_key_type_is_its_own_key(backend: KeyedStateBackend) -> None:
    t = backend.table("t")
    for i, key in enumerate(KEYS):
        t[key] = i
    for i, key in enumerate(KEYS):
        assert t[key] == i, key
    assert len(t) == len(KEYS)
    assert dict(t.items()) == {key: i for i, key in enumerate(KEYS)}
    assert {type(k) for k in t} == {type(k) for k in KEYS}


def test_equal_numbers_are_one_key(backend: KeyedStateBackend) -> None:
    t = backend.table("t")
    t[1] = "int"
    for filler in range(5):  # push 1 out of the SQLite cache between accesses
        t[f"filler{filler}"] = filler
    assert t[1.0] == "int"
    assert t[True] == "int"
    t[True] = "bool"
    t[0.0] = "zero"
    for filler in range(5, 10):
        t[f"filler{filler}"] = filler
    assert t[1] == "bool"
    assert t[False] == "zero"
    assert t[-0.0] == "zero"
    t[(1, 2.0)] = "tuple"
    assert t[(True, 2)] == "tuple"
    assert "1" not in t
    assert b"\x01" not in t
    assert len(t) == 13
    del t[1.0]
    assert 1 not in t
    assert True not in t


def test_an_unsupported_key_is_refused(backend: KeyedStateBackend) -> None:
    if isinstance(backend, MemoryStateBackend):
        pytest.skip("a dict takes any hashable key; keys are checked by key_by upstream")
    t = backend.table("t")
    with pytest.raises(InvalidKeyError):
        t[frozenset({1})] = 1
    with pytest.raises(InvalidKeyError):
        t.get(["a", "list"])


# -- state handles -----------------------------------------------------------------------


def test_value_state(backend: KeyedStateBackend) -> None:
    handle, key_ref = _bind(ValueState("count", default=0), backend)
    assert isinstance(handle, ValueStateHandle)
    for round_ in range(2):
        for key in range(6):
            key_ref.key = key
            assert handle.value() == (key * 10 if round_ else 0)
            handle.update(key * 10)
    key_ref.key = 3
    handle.clear()
    assert handle.value() == 0
    key_ref.key = 4
    assert handle.value() == 40
    handle.update(None)
    assert handle.value() is None


def test_list_state(backend: KeyedStateBackend) -> None:
    handle, key_ref = _bind(ListState("items"), backend)
    assert isinstance(handle, ListStateHandle)
    for key in ("a", "b", "c", "d"):
        key_ref.key = key
        assert handle.get() == []
        handle.add(1)
        handle.add(2)
        handle.add_all([3, 4])
        handle.add_all([])
    for key in ("a", "b", "c", "d"):
        key_ref.key = key
        assert handle.get() == [1, 2, 3, 4]
    key_ref.key = "a"
    copy = handle.get()
    copy.append("not state")
    assert handle.get() == [1, 2, 3, 4]
    handle.update(["x"])
    assert handle.get() == ["x"]
    handle.update([])
    assert handle.get() == []
    key_ref.key = "b"
    handle.clear()
    assert handle.get() == []
    key_ref.key = "e"
    handle.add_all([])
    assert handle.get() == []
    assert backend.table("items").get("e") is None  # nothing stored for an empty add_all


def test_map_state(backend: KeyedStateBackend) -> None:
    handle, key_ref = _bind(MapState("map"), backend)
    assert isinstance(handle, MapStateHandle)
    for key in range(5):
        key_ref.key = key
        assert handle.is_empty()
        handle.put("x", key)
        handle.put("y", [key])
        handle.put_all({"z": None})
    for key in range(5):
        key_ref.key = key
        assert not handle.is_empty()
        assert handle.get("x") == key
        assert handle.get("missing", "d") == "d"
        assert handle.contains("z")
        assert not handle.contains("missing")
        assert handle.keys() == ["x", "y", "z"]
        assert handle.values() == [key, [key], None]
        assert handle.items() == [("x", key), ("y", [key]), ("z", None)]
    key_ref.key = 1
    handle.remove("x")
    handle.remove("missing")
    assert handle.keys() == ["y", "z"]
    handle.remove("y")
    handle.remove("z")
    assert handle.is_empty()
    assert 1 not in backend.table("map")  # an emptied map is no entry at all
    key_ref.key = 2
    handle.clear()
    assert handle.is_empty()
    key_ref.key = 3
    assert handle.get("x") == 3


def test_reducing_state(backend: KeyedStateBackend) -> None:
    handle, key_ref = _bind(ReducingState("max", max), backend)
    assert isinstance(handle, ReducingStateHandle)
    for value in (3, 9, 4):
        for key in ("a", "b", "c", "d"):
            key_ref.key = key
            handle.add(value if key != "d" else -value)
    for key, expected in (("a", 9), ("b", 9), ("c", 9), ("d", -3)):
        key_ref.key = key
        assert handle.get() == expected
    key_ref.key = "a"
    handle.clear()
    assert handle.get() is None
    handle.add(1)
    assert handle.get() == 1


class Mean(AggregateFunction[tuple[float, int]]):
    def create_accumulator(self) -> tuple[float, int]:
        return (0.0, 0)

    def add(self, value: Any, accumulator: tuple[float, int]) -> tuple[float, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def merge(self, a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, accumulator: tuple[float, int]) -> float:
        return accumulator[0] / accumulator[1]


def test_aggregating_state(backend: KeyedStateBackend) -> None:
    handle, key_ref = _bind(AggregatingState("mean", Mean()), backend)
    assert isinstance(handle, AggregatingStateHandle)
    for key in range(5):
        key_ref.key = key
        assert handle.get() is None
        for value in range(key + 1):
            handle.add(value)
    for key in range(5):
        key_ref.key = key
        assert handle.get() == key / 2
    key_ref.key = 4
    handle.clear()
    assert handle.get() is None


DESCRIPTORS = [ValueState("v"), ListState("l"), MapState("m"), ReducingState("r", max),
               AggregatingState("g", Mean()), ValueState("ttl", ttl=1000)]


def _calls(handle: Any) -> dict[str, tuple[Any, ...]]:
    calls: dict[str, tuple[Any, ...]] = {"clear": ()}
    if isinstance(handle, ValueStateHandle):
        calls |= {"value": (), "update": (1,)}
    elif isinstance(handle, ListStateHandle):
        calls |= {"get": (), "add": (1,), "add_all": ([1],), "update": ([1],)}
    elif isinstance(handle, MapStateHandle):
        calls |= {"get": ("k",), "put": ("k", 1), "contains": ("k",), "remove": ("k",),
                  "keys": (), "values": (), "items": (), "is_empty": ()}
    else:
        calls |= {"get": (), "add": (1,)}
    return calls


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: repr(d))
def test_a_handle_without_a_current_key_refuses(backend: KeyedStateBackend,
                                                descriptor: StateDescriptor) -> None:
    handle, key_ref = _bind(descriptor, backend)
    key_ref.key = "someone"
    handle.clear()
    if isinstance(handle, ValueStateHandle):
        handle.update(1)
    elif isinstance(handle, MapStateHandle):
        handle.put("k", 1)
    else:
        handle.add(1)
    key_ref.key = NO_KEY  # after processing, outside any key
    for method, args in _calls(handle).items():
        with pytest.raises(StateAccessError):
            getattr(handle, method)(*args)
    assert len(backend.table(descriptor.name)) == 1


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: repr(d))
def test_a_handle_without_a_current_key_refuses_on_an_empty_table(
        backend: KeyedStateBackend, descriptor: StateDescriptor) -> None:
    handle, key_ref = _bind(descriptor, backend)
    assert key_ref.key is NO_KEY
    for method, args in _calls(handle).items():
        with pytest.raises(StateAccessError):
            getattr(handle, method)(*args)
    assert len(backend.table(descriptor.name)) == 0


# -- TTL -------------------------------------------------------------------------------


def test_ttl_on_write_expires_from_the_last_write(backend: KeyedStateBackend) -> None:
    clock = ManualClock(start=1_000)
    handle, key_ref = _bind(ValueState("v", default="none", ttl=100), backend, clock)
    for key in range(5):
        key_ref.key = key
        handle.update(f"v{key}")
    clock.advance(60)
    key_ref.key = 0
    assert handle.value() == "v0"  # a read does not extend on_write TTL
    key_ref.key = 1
    handle.update("v1'")  # a write does
    clock.advance(39)  # t = 1099
    key_ref.key = 0
    assert handle.value() == "v0"
    clock.advance(1)  # t = 1100: written at 1000, so expired
    for key in (0, 2, 3, 4):
        key_ref.key = key
        assert handle.value() == "none"
    key_ref.key = 1
    assert handle.value() == "v1'"
    clock.advance(60)
    assert handle.value() == "none"
    assert len(backend.table("v")) == 0  # each expired entry was dropped when met


def test_ttl_on_read_and_write_is_extended_by_reads(backend: KeyedStateBackend) -> None:
    clock = ManualClock()
    handle, key_ref = _bind(ListState("l", ttl=100, ttl_update="on_read_and_write"),
                            backend, clock)
    for key in range(5):
        key_ref.key = key
        handle.add(key)
    clock.advance(60)
    key_ref.key = 0
    assert handle.get() == [0]  # read at 60: expires at 160
    clock.advance(50)  # t = 110
    assert handle.get() == [0]  # read at 110: expires at 210
    key_ref.key = 1
    assert handle.get() == []  # never read, written at 0: expired at 100
    clock.advance(99)  # t = 209
    key_ref.key = 0
    assert handle.get() == [0]
    clock.advance(109)
    assert handle.get() == []


def test_expired_entries_are_never_returned(backend: KeyedStateBackend) -> None:
    clock = ManualClock()
    table = TtlTable(backend.table("t"), 10, clock, refresh_on_read=False)
    for key in range(6):
        table[key] = key
    clock.advance(5)
    table[0] = "fresh"
    clock.advance(5)
    assert list(table) == [0]
    assert table.get(1, "gone") == "gone"
    assert 2 not in table
    with pytest.raises(KeyError):
        table[3]
    assert table.pop(4, "gone") == "gone"
    assert table[0] == "fresh"


# -- SQLite only ---------------------------------------------------------------------------


def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = SQLiteStateBackend(path, cache_size=SMALL_CACHE)
    values, key_ref = _bind(ValueState("values"), first)
    lists, _ = _bind(ListState("lists"), first, key_ref=key_ref)  # one key_ref, as in an operator
    for key in range(20):
        key_ref.key = key
        values.update(key * 2)
        lists.add_all([key, key])
    key_ref.key = 7
    values.clear()
    first.table("untouched")
    first.flush()
    first.close()
    first.close()  # a second close does nothing

    again = SQLiteStateBackend(path, cache_size=SMALL_CACHE)
    assert set(again.tables()) == {"values", "lists", "untouched"}
    assert dict(again.table("values").items()) == {k: k * 2 for k in range(20) if k != 7}
    values, key_ref = _bind(ValueState("values", default="none"), again)
    key_ref.key = 7
    assert values.value() == "none"
    key_ref.key = 8
    assert values.value() == 16
    assert again.table("lists")[19] == [19, 19]
    again.close()


def test_close_writes_what_was_never_flushed(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = SQLiteStateBackend(path, cache_size=100)
    first.table("t")["k"] = "v"
    first.close()
    again = SQLiteStateBackend(path)
    assert again.table("t")["k"] == "v"
    again.close()


def test_state_names_are_any_string(tmp_path: Path) -> None:
    names = ["Count", "count", 'quote"d', "semi; DROP TABLE x; --", "", "ключ", "nul\x00",
             "state_", "sqlite_master", " "]
    path = tmp_path / "state.sqlite"
    backend = SQLiteStateBackend(path, cache_size=SMALL_CACHE)
    for i, name in enumerate(names):
        backend.table(name)["k"] = i
    backend.close()
    again = SQLiteStateBackend(path)
    assert sorted(again.tables()) == sorted(names)
    assert {name: again.table(name)["k"] for name in names} == {n: i for i, n in enumerate(names)}
    again.close()


def test_rows_hold_the_canonical_key_its_key_group_and_pickles(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    backend = SQLiteStateBackend(path, max_parallelism=7)
    table = backend.table("t")
    keys = ["a", 1, (2, "b"), None, b"c", 2.5]
    for key in keys:
        table[key] = {"v": key}
    table[True] = "one"  # the same row as 1
    backend.flush()
    backend.close()
    with sqlite3.connect(path) as conn:
        (sql_table,) = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'state%'")]
        rows = conn.execute(f'SELECT kg, key, value FROM "{sql_table}"').fetchall()
    conn.close()
    assert len(rows) == len(keys)
    for kg, pickled_key, value in rows:
        key = pickle.loads(pickled_key)
        assert kg == key_group(key, 7)
        assert pickle.loads(value) == ("one" if key == 1 else {"v": key})


def test_max_parallelism_cannot_change_under_existing_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    SQLiteStateBackend(path, max_parallelism=64).close()
    with pytest.raises(StreamletConfigError, match="max_parallelism=64"):
        SQLiteStateBackend(path, max_parallelism=128)
    SQLiteStateBackend(path, max_parallelism=64).close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old = os.umask(0)  # even when the process would create files world-writable
    try:
        backend = SQLiteStateBackend(path)
        backend.table("t")["k"] = "secret"
        backend.flush()
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        assert sidecar.exists()
        assert _mode(sidecar) == 0o600
    backend.close()


def test_an_existing_file_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.touch(mode=0o644)
    path.chmod(0o644)
    SQLiteStateBackend(path).close()
    assert _mode(path) == 0o600


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    SQLiteStateBackend(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reading_missing_keys_keeps_the_cache_bounded(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=50)
    table = backend.table("t")
    for i in range(1_000):
        assert table.get(i) is None
        assert i not in table
    stats = table.statistics()
    assert stats.size == table.cache_len() <= 50
    assert stats.peak <= 50
    assert stats.misses == 1_000  # the second read of each key was answered by the cache
    assert len(table) == 0
    assert backend.statistics() == {"t": table.statistics()}
    backend.close()


def test_the_cache_keeps_the_most_recently_used_keys(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=SMALL_CACHE)
    table = backend.table("t")
    table["hot"] = 0
    for i in range(100):
        table[i] = i
        assert table["hot"] == 0  # read after every write, so never the least recent
    stats = table.statistics()
    assert stats.misses == 0
    assert stats.evicted > 90
    backend.close()


def test_iteration_pages_through_a_table_larger_than_a_page(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=SMALL_CACHE)
    table = backend.table("t")
    for i in range(2_500):
        table[i] = -i
    assert dict(table.items()) == {i: -i for i in range(2_500)}
    assert sorted(table.values()) == sorted(-i for i in range(2_500))
    assert len(table) == 2_500
    backend.close()


def test_nan_keys_are_one_row(tmp_path: Path) -> None:
    # NaN != NaN, but keys are stored by their canonical encoding, in which
    # every NaN is the same: the SQLite backend has one NaN key, cached or not.
    backend = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=SMALL_CACHE)
    table = backend.table("t")
    table[float("nan")] = 1
    table[float("nan")] = 2
    table[("x", float("nan"))] = 3
    assert table[float("nan")] == 2
    for i in range(5):
        table[i] = i
    assert table[float("nan")] == 2
    assert table[("x", float("nan"))] == 3
    assert len(table) == 7
    backend.close()


def test_an_unpicklable_value_fails_loudly_and_loses_nothing(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite", cache_size=SMALL_CACHE)
    table = backend.table("t")
    table["ok"] = 1
    table["bad"] = lambda: None
    with pytest.raises(Exception, match="lambda") as raised:
        backend.flush()
    assert any("state 't'" in note for note in raised.value.__notes__)
    assert table["ok"] == 1
    table["bad"] = "fixed"
    backend.close()
    again = SQLiteStateBackend(tmp_path / "state.sqlite")
    assert dict(again.table("t").items()) == {"ok": 1, "bad": "fixed"}
    again.close()


@pytest.mark.slow
def test_two_million_keys_with_a_bounded_cache(tmp_path: Path) -> None:
    n, cache_size = 2_000_000, 10_000
    backend = SQLiteStateBackend(tmp_path / "big.sqlite", cache_size=cache_size)
    table = backend.table("big")
    started = time.perf_counter()
    for i in range(n):
        table[i] = i * 3
        if not i % 100_000:
            assert table.cache_len() <= cache_size
    backend.flush()
    written = time.perf_counter() - started
    rng = random.Random(7)
    for i in rng.sample(range(n), 20_000):
        assert table[i] == i * 3
    assert table.get(n) is None
    stats = table.statistics()
    assert stats.peak <= cache_size
    assert stats.size <= cache_size
    assert len(table) == n
    backend.close()
    print(f"\n2M keys written and flushed in {written:.1f}s; {stats}")


# -- the factory users configure ----------------------------------------------------------


def test_sqlite_state_is_a_backend_factory(tmp_path: Path) -> None:
    factory: StateBackendFactory = SQLiteState(tmp_path / "state", cache_size=5)
    backend = factory("job", "reduce")
    assert isinstance(backend, SQLiteStateBackend)
    assert backend.path == tmp_path / "state" / "job" / "reduce.sqlite"
    assert backend.cache_size == 5
    backend.table("t")["k"] = "v"
    backend.close()
    assert _mode(tmp_path / "state" / "job") == 0o700
    # each run starts from empty state: the file is a working store, not a checkpoint
    again = SQLiteState(str(tmp_path / "state"))("job", "reduce")
    assert "k" not in again.table("t")
    again.close()


def test_job_and_operator_names_become_distinct_safe_file_names(tmp_path: Path) -> None:
    factory = SQLiteState(tmp_path)
    names = ["Sum", "sum", "a/b", "a_b", "..", ".", "", "ключ", "x" * 300, "x" * 301,
             "reduce[1]", "reduce[2]"]
    paths = {factory.path("job", name) for name in names}
    assert len(paths) == len(names)
    for path in paths:
        assert path.parent == tmp_path / "job"
        assert not path.name.startswith(".")
        assert len(path.name) < 120
        assert path.name.isascii()
    assert factory.path("job", "reduce") == tmp_path / "job" / "reduce.sqlite"
    assert factory.path("../up", "op").parent.parent == tmp_path
    backend = factory("My Job", "a/b")
    assert backend.path.exists()
    backend.close()


@pytest.mark.parametrize("kwargs", [
    {"directory": ""}, {"directory": None}, {"directory": 3},
    {"directory": "d", "cache_size": 0}, {"directory": "d", "cache_size": -1},
    {"directory": "d", "cache_size": True}, {"directory": "d", "cache_size": "10"},
    {"directory": "d", "cache_size": 1.5},
    {"directory": "d", "max_parallelism": 0}, {"directory": "d", "max_parallelism": 32_769},
    {"directory": "d", "max_parallelism": 128.0},
])
def test_bad_settings_are_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(StreamletConfigError):
        SQLiteState(**kwargs)


def test_the_backend_checks_its_settings_too(tmp_path: Path) -> None:
    with pytest.raises(StreamletConfigError):
        SQLiteStateBackend(tmp_path / "x.sqlite", cache_size=0)
    with pytest.raises(StreamletConfigError):
        SQLiteStateBackend(tmp_path / "x.sqlite", max_parallelism=0)


# -- SQLite behaves like a dict, whatever happens ------------------------------------------

_KEY = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, True, False, None, (1, "a"), (1.0, "a"), ()]),
    st.text(max_size=2),
    st.binary(max_size=2),
)
_OP = st.one_of(
    st.tuples(st.just("set"), _KEY, st.integers()),
    st.tuples(st.just("pop"), _KEY, st.none()),
    st.tuples(st.just("del"), _KEY, st.none()),
    st.tuples(st.just("get"), _KEY, st.none()),
    st.tuples(st.just("contains"), _KEY, st.none()),
    st.tuples(st.just("len"), st.none(), st.none()),
    st.tuples(st.just("flush"), st.none(), st.none()),
)


def _apply(table: Any, op: str, key: Any, value: Any, flush: Any) -> Any:
    if op == "set":
        table[key] = value
        return None
    if op == "pop":
        return table.pop(key, "default")
    if op == "del":
        try:
            del table[key]
        except KeyError:
            return "KeyError"
        return None
    if op == "get":
        return table.get(key, "default")
    if op == "contains":
        return key in table
    if op == "len":
        return len(table)
    flush()
    return None


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_OP, max_size=60), cache_size=st.integers(1, 4))
def test_sqlite_gives_the_same_answers_as_a_dict(ops: list[tuple[str, Any, Any]],
                                                 cache_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteStateBackend(Path(tmp) / "state.sqlite", cache_size=cache_size)
        table = backend.table("t")
        model: dict[Any, Any] = {}
        for op, key, value in ops:
            got = _apply(table, op, key, value, backend.flush)
            expected = _apply(model, op, key, value, lambda: None)
            assert got == expected, (op, key)
            assert table.cache_len() <= cache_size
        assert dict(table.items()) == model
        backend.close()
        again = SQLiteStateBackend(Path(tmp) / "state.sqlite", cache_size=cache_size)
        assert dict(again.table("t").items()) == model
        again.close()
