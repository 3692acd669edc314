"""The running keyed ``reduce``: one accumulator per key, emitted on every record.

The accumulators live in a plain dict keyed by the record's key; the stable
key group is not needed until state is snapshotted or routed, so the hot loop
is a dict lookup and one call of the user function per record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlet.errors import OperatorTimeoutError
from streamlet.state.snapshots import KeyedRows, OperatorState, keyed_rows, rows_of

from .async_call import CallTimedOut, call_within
from .batch import Batch
from .operator import DeadLetter, Operator, checking_first_call

_MISSING: Any = object()


class ReduceOperator(Operator):
    def __init__(self, name: str, fn: Callable[[Any, Any], Any], *, is_async: bool,
                 on_error: str, timeout_ms: int | None = None) -> None:
        self.name = name
        self.fn = fn if is_async else checking_first_call(self, "fn", fn)
        self.is_async = is_async
        self.timeout_ms = timeout_ms
        self.on_error = on_error
        self.state: dict[Any, Any] = {}

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> KeyedRows:
        return keyed_rows(None, list(self.state.items()))

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        self.state.update(rows_of(state))

    async def process(self, batch: Batch) -> None:
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        if self.is_async:
            out, bad = await self._reduce_async(batch, dead)
        else:
            out, bad = self._reduce(batch, dead)
        if dead:
            await self.emit_dead_letters(dead)
        if out:
            ts = batch.timestamps
            if ts is not None and bad:
                skip = set(bad)
                ts = [t for i, t in enumerate(ts) if i not in skip]
            await self.output.push(Batch(out, None, ts))

    def _reduce(self, batch: Batch, dead: list[DeadLetter] | None) -> tuple[list[Any], list[int]]:
        keys = batch.keys
        assert keys is not None, "reduce runs behind key_by"
        values = batch.values
        state = self.state
        get = state.get
        fn = self.fn
        out: list[Any] = []
        append = out.append
        bad: list[int] = []
        start = 0
        n = len(values)
        while start < n:
            try:
                for key, value in zip(keys[start:] if start else keys,
                                      values[start:] if start else values, strict=True):
                    acc = get(key, _MISSING)
                    acc = value if acc is _MISSING else fn(acc, value)
                    state[key] = acc
                    append(acc)
                break
            except Exception as exc:
                index = len(out) + len(bad)
                self.failed(batch, index, exc, dead)
                bad.append(index)
                start = index + 1
        return out, bad

    async def _reduce_async(self, batch: Batch, dead: list[DeadLetter] | None
                            ) -> tuple[list[Any], list[int]]:
        keys = batch.keys
        assert keys is not None, "reduce runs behind key_by"
        state = self.state
        fn = self.fn
        timeout_ms = self.timeout_ms
        out: list[Any] = []
        bad: list[int] = []
        for index, (key, value) in enumerate(zip(keys, batch.values, strict=True)):
            acc = state.get(key, _MISSING)
            if acc is _MISSING:
                acc = value
            else:
                try:
                    if timeout_ms is None:
                        acc = await fn(acc, value)
                    else:
                        acc = await call_within(timeout_ms, fn, acc, value)
                except Exception as exc:
                    if isinstance(exc, CallTimedOut):
                        exc = OperatorTimeoutError(self.name, value, timeout_ms or 0)
                    self.failed(batch, index, exc, dead)
                    bad.append(index)
                    continue
            state[key] = acc
            out.append(acc)
        return out, bad
