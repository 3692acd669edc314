"""The codec's limits, and its errors on bytes it did not write.

The round-trip properties over random data are in property_tests/test_codec.py.
"""

from __future__ import annotations

import datetime
import pickle

import pytest

from streamlet.cluster.codec import (
    BARRIER,
    BATCH,
    END,
    WATERMARK,
    CodecError,
    decode,
    encode,
    from_bytes,
    to_bytes,
)
from streamlet.core.batch import Batch
from streamlet.core.control import MAX_WATERMARK, MIN_WATERMARK, Watermark
from streamlet.errors import StreamletError


def round_trip(batch: Batch) -> tuple[int, Batch]:
    kind, payload = encode(batch)
    back = decode(kind, payload)
    assert type(back) is Batch
    return kind, back


def test_plain_records_keep_their_types() -> None:
    values = [{"user": "u17", "amount": 12.5, "ts": 1_700_000_000_000},
              ("u1", 3), ["u1", 3], {(1, "a"): [(), ([],)]}, b"\x00", None, True, 2**64 - 1]
    keys = [("u", 1), "u", 1, 1.0, True, None, b"k", -(2**63)]
    kind, back = round_trip(Batch(values, keys, list(range(8)), ("topic", 3), list(range(8))))
    assert kind == BATCH
    assert back.values == values and back.keys == keys
    assert [type(v) for v in back.values] == [type(v) for v in values]
    assert [type(k) for k in back.keys] == [type(k) for k in keys]
    assert type(back.values[3][(1, "a")][1][0]) is list
    assert back.split == ("topic", 3) and back.timestamps == list(range(8))
    assert back.offsets == list(range(8))


@pytest.mark.parametrize("odd", [datetime.datetime(2024, 5, 1, 12), {1, 2}, 2**64, -(2**63) - 1,
                                 "lone \ud800", bytearray(b"ab"), frozenset({1})])
def test_any_picklable_record_keeps_its_type(odd: object) -> None:
    values = [{"a": (1, 2)}, [odd], "x"]
    _, back = round_trip(Batch(values, ["k", "k", ("k", 2)], split=datetime.date(2024, 1, 1)))
    assert back.values == values and type(back.values[0]["a"]) is tuple
    assert type(back.values[1][0]) is type(odd)
    assert back.keys == ["k", "k", ("k", 2)] and back.split == datetime.date(2024, 1, 1)


def test_a_value_that_cannot_be_pickled_is_named_with_its_index() -> None:
    with pytest.raises(CodecError, match=r"its value at index 2, <function .*lambda.* "
                                         r"cannot be pickled"):
        encode(Batch([1, 2, lambda: 3]))


def test_control_elements() -> None:
    assert encode(Watermark(MIN_WATERMARK)) == (WATERMARK, b"\x80" + b"\x00" * 7)
    assert decode(*encode(Watermark(MAX_WATERMARK))) == Watermark(MAX_WATERMARK)
    with pytest.raises(CodecError, match=r"cannot encode watermark 18446744073709551616"):
        encode(Watermark(2**64))
    with pytest.raises(CodecError, match="only a Batch, Watermark"):
        encode("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "payload", "message"), [
    (0x42, b"xyz", r"unknown kind 0x42 \(3 bytes\); known kinds: 0x02 batch"),
    (BATCH, b"garbage", r"cannot decode a batch of 7 bytes: "),
    (BATCH, pickle.dumps("not a batch"), r"is not \[values, keys"),
    (BATCH, pickle.dumps([[1, 2], [1], None, None, None]),
     r"keys must be None or a list of 2, got \[1\]"),
    (BATCH, pickle.dumps([{"a": 1}, None, None, None, None]), "values are dict"),
    (WATERMARK, b"\x00" * 7, "an encoded watermark is 8 bytes, got 7"),
    (BARRIER, b"", "an encoded barrier is 8 bytes, got 0"),
    (END, b"\x00", "an encoded end of input has no payload, got 1 bytes"),
])
def test_garbage_is_refused_with_a_clear_error(kind: int, payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message) as caught:
        decode(kind, payload)
    assert isinstance(caught.value, StreamletError) and isinstance(caught.value, ValueError)


def test_from_bytes_of_nothing() -> None:
    with pytest.raises(CodecError, match="the kind byte is missing"):
        from_bytes(b"")
    assert from_bytes(to_bytes(Watermark(5))) == Watermark(5)
