"""The sync record-at-a-time operators, each one C-level loop per batch.

``map``, ``filter``, ``flat_map``, ``key_by`` and ``sink`` call the user
function through ``map()``/``filter()`` over a list iterator. When the
function raises, the iterator's remaining length says exactly which record
failed, so the fast path carries no per-record bookkeeping at all, and the
loop resumes after the bad record without calling the function twice on any
record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, compress
from typing import Any

from streamlet.errors import InvalidKeyError
from streamlet.state.keys import is_valid_key

from .batch import Batch
from .operator import DeadLetter, Operator, checking_first_call

_SCALAR_KEY_TYPES = frozenset((str, int, float, bytes, bool, type(None)))
_drain: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend


_STOP_ITERATION = "the function raised StopIteration"


def run_guarded(op: Operator, batch: Batch, bulk: Callable[[Iterator[Any]], Any],
                one: Callable[[Any], Any], dead: list[DeadLetter] | None) -> list[int]:
    """Run the user function over the batch's values; return the failed indices.

    ``bulk`` consumes an iterator in one C-level loop; ``one`` handles a
    single value. A ``StopIteration`` escaping the user function ends a C loop
    early and silently; inside the batch the iterator's remaining length
    exposes it, and the last record is handed to ``one``, called directly, so
    that there it is an exception like any other. In ``fail`` mode the first
    failure raises (through ``op.failed``).
    """
    values = batch.values
    n = len(values)
    if not n:
        return []
    body = n - 1
    it = iter(values[:body])
    remaining = it.__length_hint__  # type: ignore[attr-defined]  # list iterators have it
    bad: list[int] = []
    while remaining():
        try:
            bulk(it)
        except Exception as exc:
            index = body - remaining() - 1
            op.failed(batch, index, exc, dead)
            bad.append(index)
            continue
        if remaining():
            index = body - remaining() - 1
            op.failed(batch, index, RuntimeError(_STOP_ITERATION), dead)
            bad.append(index)
    try:
        one(values[body])
    except StopIteration:
        op.failed(batch, body, RuntimeError(_STOP_ITERATION), dead)
        bad.append(body)
    except Exception as exc:
        op.failed(batch, body, exc, dead)
        bad.append(body)
    return bad


def without(column: list[Any] | None, bad: list[int]) -> list[Any] | None:
    if column is None or not bad:
        return column
    skip = set(bad)
    return [x for i, x in enumerate(column) if i not in skip]


class _UserOperator(Operator):
    def __init__(self, name: str, fn: Callable[..., Any], on_error: str) -> None:
        self.name = name
        self.fn = checking_first_call(self, "fn", fn)
        self.on_error = on_error

    def _dead_list(self) -> list[DeadLetter] | None:
        return [] if self.on_error == "dead_letter" else None


class MapOperator(_UserOperator):
    async def process(self, batch: Batch) -> None:
        out: list[Any] = []
        extend = out.extend
        fn = self.fn
        dead = self._dead_list()
        bad = run_guarded(self, batch, lambda it: extend(map(fn, it)),
                          lambda v: out.append(fn(v)), dead)
        if dead:
            await self.emit_dead_letters(dead)
        if out:
            await self.output.push(
                Batch(out, without(batch.keys, bad), without(batch.timestamps, bad), batch.split,
                      without(batch.offsets, bad)))


class FilterOperator(_UserOperator):
    async def process(self, batch: Batch) -> None:
        fn = self.fn
        dead = self._dead_list()
        if batch.keys is None and batch.timestamps is None and batch.offsets is None:
            out: list[Any] = []
            extend = out.extend

            def keep_if(value: Any) -> None:
                if fn(value):
                    out.append(value)
            run_guarded(self, batch, lambda it: extend(filter(fn, it)), keep_if, dead)
            result = Batch(out, None, None, batch.split)
        else:
            flags: list[Any] = []
            extend = flags.extend
            bad = run_guarded(self, batch, lambda it: extend(map(fn, it)),
                              lambda v: flags.append(fn(v)), dead)
            for index in bad:  # a failed record is not kept
                flags.insert(index, False)
            keys = batch.keys
            ts = batch.timestamps
            offsets = batch.offsets
            result = Batch(list(compress(batch.values, flags)),
                           None if keys is None else list(compress(keys, flags)),
                           None if ts is None else list(compress(ts, flags)), batch.split,
                           None if offsets is None else list(compress(offsets, flags)))
        if dead:
            await self.emit_dead_letters(dead)
        if result.values:
            await self.output.push(result)


class FlatMapOperator(_UserOperator):
    async def process(self, batch: Batch) -> None:
        fn = self.fn
        dead = self._dead_list()
        if batch.keys is None and batch.timestamps is None and batch.offsets is None:
            out: list[Any] = []
            extend = out.extend
            # list() materialises each record's outputs before any reach ``out``:
            # a record that fails halfway contributes nothing, keyed or not.
            run_guarded(self, batch, lambda it: extend(chain.from_iterable(map(list, map(fn, it)))),
                        lambda v: extend(list(fn(v))), dead)
            result = Batch(out, None, None, batch.split)
        else:
            result = self._with_columns(batch, dead)
        if dead:
            await self.emit_dead_letters(dead)
        if result.values:
            await self.output.push(result)

    def _with_columns(self, batch: Batch, dead: list[DeadLetter] | None) -> Batch:
        fn = self.fn
        keys = batch.keys
        ts = batch.timestamps
        values: list[Any] = []
        out_keys: list[Any] | None = None if keys is None else []
        out_ts: list[int] | None = None if ts is None else []
        offsets = batch.offsets
        out_offsets: list[int] | None = None if offsets is None else []
        for i, value in enumerate(batch.values):
            try:
                items = list(fn(value))
            except Exception as exc:
                self.failed(batch, i, exc, dead)
                continue
            values.extend(items)
            if out_keys is not None and keys is not None:
                out_keys.extend([keys[i]] * len(items))
            if out_ts is not None and ts is not None:
                out_ts.extend([ts[i]] * len(items))
            if out_offsets is not None and offsets is not None:
                out_offsets.extend([offsets[i]] * len(items))
        return Batch(values, out_keys, out_ts, batch.split, out_offsets)


class KeyByOperator(_UserOperator):
    """Computes each record's key; the edge after it routes by key group."""

    async def process(self, batch: Batch) -> None:
        keys: list[Any] = []
        extend = keys.extend
        fn = self.fn
        dead = self._dead_list()
        bad = run_guarded(self, batch, lambda it: extend(map(fn, it)),
                          lambda v: keys.append(fn(v)), dead)
        values = without(batch.values, bad)
        ts = without(batch.timestamps, bad)
        assert values is not None
        if not _SCALAR_KEY_TYPES.issuperset(map(type, keys)):
            values, keys, ts = self._drop_invalid(batch, bad, values, keys, ts, dead)
        if dead:
            await self.emit_dead_letters(dead)
        if values:
            await self.output.push(Batch(values, keys, ts))

    def _drop_invalid(self, batch: Batch, bad: list[int], values: list[Any], keys: list[Any],
                      ts: list[int] | None, dead: list[DeadLetter] | None
                      ) -> tuple[list[Any], list[Any], list[int] | None]:
        keep = [is_valid_key(k) for k in keys]
        if all(keep):
            return values, keys, ts
        original = [i for i in range(len(batch.values)) if i not in set(bad)]
        for j, ok in enumerate(keep):
            if not ok:
                self.failed(batch, original[j], InvalidKeyError(self.name, keys[j]), dead)
        return (list(compress(values, keep)), list(compress(keys, keep)),
                None if ts is None else list(compress(ts, keep)))


class SinkOperator(_UserOperator):
    async def process(self, batch: Batch) -> None:
        fn = self.fn
        dead = self._dead_list()
        run_guarded(self, batch, lambda it: _drain(map(fn, it)), fn, dead)
        if dead:
            await self.emit_dead_letters(dead)


class CollectOperator(Operator):
    """Appends every value to a list the user holds (``Stream.collect``)."""

    def __init__(self, name: str, target: list[Any]) -> None:
        self.name = name
        self.target = target

    async def process(self, batch: Batch) -> None:
        self.target.extend(batch.values)


class PassThrough(Operator):
    """The head of a union or a side output: hands batches on unchanged."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def process(self, batch: Batch) -> None:
        await self.output.push(batch)
