"""The codec against the identity oracle: whatever goes in comes out, exactly.

"Exactly" is stricter than ``==``: ``same`` also requires equal types at every
depth (a tuple stays a tuple, 1 does not become 1.0 or True), dict items in the
same order, and floats equal bit for bit (NaN and -0.0 included).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import pickle
import struct
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamlet.cluster.codec import (
    BATCH,
    RECORDS,
    decode,
    encode,
    from_bytes,
    to_bytes,
)
from streamlet.cluster.results import pack_collected, unpack_collected
from streamlet.core.batch import Batch
from streamlet.core.control import ACTIVE, END_OF_INPUT, IDLE, Barrier, Watermark
from streamlet.windows import TimeWindow, WindowResult


@dataclass(frozen=True)
class Point:
    x: int
    y: Any


class Colour(enum.IntEnum):
    RED = 1


Pair = namedtuple("Pair", "left right")


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    # subclasses (a namedtuple, a dict subclass) item by item too: == fails on NaN
    if isinstance(a, (list, tuple, dict)) and (
            getattr(a, "__dict__", None) != getattr(b, "__dict__", None)):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True))
    if type(a) is Batch:
        return all(same(getattr(a, f), getattr(b, f))
                   for f in ("values", "keys", "timestamps", "split", "offsets"))
    return bool(a == b)


def is_plain(x: Any) -> bool:
    t = type(x)
    if x is None or t in (bool, float, bytes):
        return True
    if t is int:
        return -(2**63) <= x < 2**64
    if t is str:
        try:
            x.encode()
        except UnicodeEncodeError:
            return False
        return True
    if t in (list, tuple):
        return all(is_plain(v) for v in x)
    if t is dict:
        return all(is_plain(k) and is_plain(v) for k, v in x.items())
    return False


scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text() | st.binary())
hashables = st.recursive(scalars, lambda c: st.lists(c, max_size=3).map(tuple), max_leaves=6)
plain = st.recursive(
    scalars,
    lambda c: (st.lists(c, max_size=4) | st.lists(c, max_size=4).map(tuple)
               | st.dictionaries(hashables, c, max_size=4)),
    max_leaves=20)
others = st.sampled_from([
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    datetime.date(2024, 1, 2),
    decimal.Decimal("1.10"),
    {1, 2},
    frozenset({"a"}),
    2**64,
    -(2**63) - 1,
    10**40,
    Point(1, (2, [3])),
    Colour.RED,
    OrderedDict(a=1),
    Pair(1, "x"),
    "lone \ud800 surrogate",
    complex(1, 2),
])
# a value that is not plain, somewhere inside plain data
unplain = st.recursive(
    others,
    lambda c: (st.tuples(st.lists(plain, max_size=2), c).map(lambda t: [*t[0], t[1]])
               | st.tuples(c, plain).map(tuple)
               | st.tuples(hashables, c).map(lambda kv: {kv[0]: kv[1]})),
    max_leaves=4)
splits = st.none() | st.text(max_size=5) | st.integers(0, 99) | st.tuples(st.text(max_size=5),
                                                                          st.integers(0, 99))


@st.composite
def batches(draw: st.DrawFn, values: st.SearchStrategy[Any] = plain,
            keys: st.SearchStrategy[Any] = hashables) -> Batch:
    n = draw(st.integers(0, 12))
    column = lambda s: st.none() | st.lists(s, min_size=n, max_size=n)  # noqa: E731
    return Batch(draw(st.lists(values, min_size=n, max_size=n)),
                 draw(column(keys)),
                 draw(column(st.integers(-(2**63), 2**63 - 1))),
                 draw(splits),
                 draw(column(st.integers(0, 2**63 - 1))))


def round_trip(batch: Batch) -> tuple[int, Any]:
    kind, payload = encode(batch)
    # a pickle, or (flat dicts of scalars, with the C speedups) packed records
    assert kind in (BATCH, RECORDS)
    back = decode(kind, payload)
    assert same(from_bytes(to_bytes(batch)), back)
    return kind, back


@settings(max_examples=300, deadline=None)
@given(plain)
def test_plain_data_round_trips_exactly(value: Any) -> None:
    batch = Batch([value], [value] if is_plain_key(value) else None)
    back = round_trip(batch)[1]
    assert same(back, batch)


def is_plain_key(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(batches())
def test_plain_batches_round_trip_exactly(batch: Batch) -> None:
    back = round_trip(batch)[1]
    assert same(back, batch)


@settings(max_examples=300, deadline=None)
@given(batches(values=plain | unplain, keys=hashables | others.filter(is_plain_key)))
def test_any_batch_round_trips_exactly(batch: Batch) -> None:
    back = round_trip(batch)[1]
    assert same(back, batch)


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_control_elements_round_trip(n: int) -> None:
    watermark = decode(*encode(Watermark(n)))
    assert type(watermark) is Watermark and watermark.timestamp == n
    barrier = decode(*encode(Barrier(n)))
    assert type(barrier) is Barrier and barrier.checkpoint_id == n
    for element in (END_OF_INPUT, IDLE, ACTIVE):
        assert decode(*encode(element)) is element


windows = st.builds(lambda start, size: TimeWindow(start, start + size),
                    st.integers(-(2**40), 2**40), st.integers(1, 10**6))
window_results = st.builds(WindowResult, hashables, windows, plain)


@settings(max_examples=200, deadline=None)
@given(st.lists(window_results, max_size=8) | st.lists(window_results | plain, max_size=8))
def test_collected_values_come_back_exactly(values: list[Any]) -> None:
    """What collect() gathered in a worker, through the pickle to the coordinator."""
    back = unpack_collected(pickle.loads(pickle.dumps(pack_collected(values), protocol=5)))
    assert len(back) == len(values)
    for got, want in zip(back, values, strict=True):
        assert type(got) is type(want)
        if type(want) is WindowResult:
            assert type(got.window) is TimeWindow
            assert same(tuple(got.window), tuple(want.window))
            assert same(got.key, want.key) and same(got.value, want.value)
        else:
            assert same(got, want)
