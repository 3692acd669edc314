"""The C speedups against the Python code they stand in for (streamlet.native).

Each property puts random input through the C function and through a plain
Python oracle: ``key_group_python`` for key groups, a loop that asks every
record's owner for the shuffle's cut, and the identity for the records
codec, checked with ``same`` (types, dict order and float bits included).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streamlet.cluster import codec, shuffle
from streamlet.core.batch import Batch
from streamlet.native import speedups
from streamlet.state import keys as keys_module
from streamlet.state.keys import key_group_python, worker_for_key_group

from .test_codec import same

pytestmark = pytest.mark.skipif(speedups is None, reason="the C speedups were not built "
                                "(tests/test_speedups.py says why on CI)")

MAX_PARALLELISMS = st.sampled_from([1, 2, 7, 128, 1000, 32768])

scalar_keys = st.one_of(
    st.integers(),  # big ones too: those take the Python fallback
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),  # surrogates
    st.floats(allow_nan=True), st.booleans(), st.none(), st.binary(max_size=8))
keys = st.recursive(scalar_keys, lambda inner: st.tuples(inner, inner), max_leaves=4)


@settings(max_examples=400)
@given(key=keys, max_parallelism=MAX_PARALLELISMS)
def test_key_group_is_the_python_key_group(key: Any, max_parallelism: int) -> None:
    assert speedups is not None
    assert (speedups.key_group(key, max_parallelism, key_group_python)
            == key_group_python(key, max_parallelism))


def owner_of(key: Any, workers: int, max_parallelism: int) -> int:
    return worker_for_key_group(key_group_python(key, max_parallelism), workers, max_parallelism)


@given(batch_keys=st.lists(keys, max_size=60), workers=st.integers(1, 6),
       max_parallelism=st.sampled_from([6, 7, 128, 1000]), stamped=st.booleans())
def test_cut_keeps_each_owners_records_in_order(batch_keys: list[Any], workers: int,
                                                max_parallelism: int, stamped: bool) -> None:
    assert speedups is not None
    values = [object() for _ in batch_keys]
    timestamps = list(range(len(batch_keys))) if stamped else None
    parts = speedups.cut(values, batch_keys, timestamps, workers, max_parallelism,
                         key_group_python)
    assert len(parts) == workers
    for worker, part in enumerate(parts):
        mine = [i for i, k in enumerate(batch_keys)
                if owner_of(k, workers, max_parallelism) == worker]
        if not mine:
            assert part is None
            continue
        assert part is not None
        part_values, part_keys, part_timestamps = part
        assert all(a is values[i] for a, i in zip(part_values, mine, strict=True))
        assert all(a is batch_keys[i] for a, i in zip(part_keys, mine, strict=True))
        assert part_timestamps == (mine if stamped else None)


@given(batch_keys=st.lists(st.one_of(st.integers(-5000, 5000), st.text(max_size=3)),
                           min_size=1, max_size=40),
       workers=st.integers(2, 4))
def test_the_shuffle_cuts_alike_in_c_and_in_python(batch_keys: list[Any], workers: int) -> None:
    batch = Batch([{"k": k} for k in batch_keys], batch_keys, list(range(len(batch_keys))),
                  split=3)
    output = shuffle.ShuffleOutput(None, {}, 0, workers, 128, 1024)  # type: ignore[arg-type]
    in_c = output._parts(batch)
    with mock.patch.object(shuffle, "speedups", None), \
            mock.patch.object(keys_module, "speedups", None):
        in_python = output._parts(batch)
    assert [w for w, _ in in_c] == [w for w, _ in in_python]
    for (_, a), (_, b) in zip(in_c, in_python, strict=True):
        assert same(a, b)


# -- the records codec -------------------------------------------------------------------

field_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
    st.text(), st.booleans(), st.none())


@st.composite
def record_batches(draw: st.DrawFn) -> Batch:
    """Flat dicts with the same fields in the same order; keys and timestamps
    taken from a field (the same objects), computed apart, or absent."""
    names = draw(st.lists(st.text(max_size=6), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(1, 30))
    values = [{name: draw(field_values) for name in names} for _ in range(n)]
    key_column = draw(st.sampled_from(["field", "apart", "none"]))
    key_field = draw(st.sampled_from(names))
    batch_keys: list[Any] | None = (
        [v[key_field] for v in values] if key_column == "field"
        else draw(st.lists(field_values, min_size=n, max_size=n)) if key_column == "apart"
        else None)
    ts_column = draw(st.sampled_from(["field", "apart", "none"]))
    if ts_column == "field":
        stamp = f"ts-{len(names)}"  # a field of its own, an int in every record
        for v in values:
            v[stamp] = draw(st.integers(0, 2**40))
        timestamps: list[int] | None = [v[stamp] for v in values]
    else:
        timestamps = (draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n))
                      if ts_column == "apart" else None)
    split = draw(st.one_of(st.none(), st.integers(0, 5), st.tuples(st.text(max_size=3),
                                                                     st.integers(0, 5))))
    offsets = draw(st.one_of(st.none(), st.just(list(range(n)))))
    return Batch(values, batch_keys, timestamps, split, offsets)


@settings(max_examples=300)
@given(batch=record_batches())
def test_records_come_back_exactly(batch: Batch) -> None:
    kind, payload = codec.encode(batch)
    assert kind == codec.RECORDS
    back = codec.decode(kind, payload)
    assert same(back, batch)
    assert type(back) is Batch
    def from_fields(column: list[Any], records: list[Any]) -> bool:
        return all(any(k is v for v in record.values())
                   for k, record in zip(column, records, strict=True))

    for before, after in ((batch.keys, back.keys), (batch.timestamps, back.timestamps)):
        if before is not None and from_fields(before, batch.values):
            # taken from a field: still that field's objects, not copies
            assert after is not None and from_fields(after, back.values)


class RecordDict(dict[str, Any]):
    """A dict subclass: pickled as itself, never flattened to a dict."""


ODD_RECORDS = st.sampled_from([
    (1, 2), [1], {"a": (1,)}, {"a": 2**63}, {"a": -(2**63) - 1}, {1: "a"},
    {"a": "\ud800"}, {"a": {"b": 1}}, {"a": b"x"}, "text", 7, None,
])


@given(batch=record_batches(), data=st.data())
def test_anything_else_takes_pickle_and_comes_back_exactly(batch: Batch,
                                                           data: st.DataObject) -> None:
    """One record that is not a flat dict of the batch's fields sends the whole
    batch through pickle: never a lossy or partial fast path."""
    index = data.draw(st.integers(0, len(batch.values) - 1))
    odd = data.draw(st.one_of(
        ODD_RECORDS, st.sampled_from(["reordered", "subclass", "extra field"])))
    values = list(batch.values)
    record = values[index]
    if odd in ("reordered", "extra field"):
        # other fields than the other records' (a lone record is flat with any fields)
        assume(len(values) > 1)
    if odd == "reordered":
        assume(len(record) > 1)
        values[index] = dict(reversed(list(record.items())))
    elif odd == "subclass":
        values[index] = RecordDict(record)
    elif odd == "extra field":
        values[index] = {**record, "extra\x00": 1}
    else:
        values[index] = odd
    keys_ = None if batch.keys is None else list(batch.keys)
    odd_batch = Batch(values, keys_, batch.timestamps, batch.split, batch.offsets)
    assert speedups is not None
    assert speedups.encode_records(values, keys_, batch.timestamps) is None
    kind, payload = codec.encode(odd_batch)
    assert kind == codec.BATCH
    assert same(codec.decode(kind, payload), odd_batch)


@given(batch=record_batches(), data=st.data())
def test_damaged_records_are_a_codec_error_never_a_crash(batch: Batch,
                                                         data: st.DataObject) -> None:
    kind, payload = codec.encode(batch)
    damaged = bytearray(payload)
    cut = data.draw(st.booleans())
    if cut:
        damaged = damaged[:data.draw(st.integers(0, len(payload) - 1))]
    else:
        at = data.draw(st.integers(0, len(payload) - 1))
        damaged[at] ^= data.draw(st.integers(1, 255))
    try:
        back = codec.decode(kind, bytes(damaged))
    except codec.CodecError as exc:
        assert "cannot decode a batch of records" in str(exc)
    else:
        assert not cut, "a truncated batch decoded"
        assert type(back) is Batch
