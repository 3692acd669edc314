"""The codec's fallback to pickle, its limits, and its errors on bytes it did not write.

The round-trip properties over random data are in property_tests/test_codec.py.
"""

from __future__ import annotations

import datetime
import pickle

import msgpack
import pytest

from streamlet.cluster.codec import (
    BARRIER,
    END,
    MSGPACK_BATCH,
    PICKLED_BATCH,
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
    assert kind == MSGPACK_BATCH
    assert back.values == values and back.keys == keys
    assert [type(v) for v in back.values] == [type(v) for v in values]
    assert [type(k) for k in back.keys] == [type(k) for k in keys]
    assert type(back.values[3][(1, "a")][1][0]) is list
    assert back.split == ("topic", 3) and back.timestamps == list(range(8))
    assert back.offsets == list(range(8))


@pytest.mark.parametrize("odd", [datetime.datetime(2024, 5, 1, 12), {1, 2}, 2**64, -(2**63) - 1,
                                 "lone \ud800"])
def test_one_value_msgpack_cannot_hold_sends_the_whole_batch_through_pickle(odd: object) -> None:
    values = [{"a": (1, 2)}, [odd], "x"]
    kind, back = round_trip(Batch(values, ["k", "k", ("k", 2)]))
    assert kind == PICKLED_BATCH
    assert back.values == values and type(back.values[0]["a"]) is tuple
    assert back.keys == ["k", "k", ("k", 2)]


def test_an_unusual_key_or_split_also_falls_back() -> None:
    assert encode(Batch([1], [frozenset({1})]))[0] == PICKLED_BATCH
    assert encode(Batch([1], split=datetime.date(2024, 1, 1)))[0] == PICKLED_BATCH


def test_bytearray_arrives_as_bytes_the_documented_exception() -> None:
    _, back = round_trip(Batch([bytearray(b"ab")]))
    assert back.values == [b"ab"] and type(back.values[0]) is bytes


def test_a_value_that_cannot_be_pickled_is_named_with_its_index() -> None:
    with pytest.raises(CodecError, match=r"its value at index 2, <function .*lambda.* "
                                         r"is neither plain data nor picklable"):
        encode(Batch([1, 2, lambda: 3]))


def test_control_elements() -> None:
    assert encode(Watermark(MIN_WATERMARK)) == (WATERMARK, b"\x80" + b"\x00" * 7)
    assert decode(*encode(Watermark(MAX_WATERMARK))) == Watermark(MAX_WATERMARK)
    with pytest.raises(CodecError, match=r"cannot encode watermark 18446744073709551616"):
        encode(Watermark(2**64))
    with pytest.raises(CodecError, match="only a Batch, Watermark"):
        encode("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "payload", "message"), [
    (0x42, b"xyz", r"unknown kind 0x42 \(3 bytes\); known kinds: 0x01 msgpack batch"),
    (MSGPACK_BATCH, b"\xc1", r"cannot decode a msgpack batch of 1 bytes: "),
    (MSGPACK_BATCH, msgpack.packb([1, 2, 3]), r"msgpack batch of 4 bytes is not "
                                              r"\[values, keys, timestamps, split, offsets\]"),
    (MSGPACK_BATCH, msgpack.packb([[1, 2], [1], None, None, None]),
     r"keys must be None or a list of 2, got \[1\]"),
    (MSGPACK_BATCH, msgpack.packb([{"a": 1}, None, None, None, None]), "values are dict"),
    (MSGPACK_BATCH, msgpack.packb([[], None, None, None, None]) + b"\x00", "ExtraData"),
    (PICKLED_BATCH, b"garbage", r"cannot decode a pickled batch of 7 bytes: "),
    (PICKLED_BATCH, pickle.dumps("not a batch"), r"is not \[values, keys"),
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
