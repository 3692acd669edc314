"""The async-I/O operator: ``async def`` user functions with bounded concurrency.

Each record's call is a task; at most ``concurrency`` are in flight (counted
until their result is emitted, as in Flink's ``AsyncWaitOperator``). An
emitter task owned by the operator pushes results downstream as they become
ready: in input order when ``ordered``, otherwise in completion order. It is
the only thing that pushes downstream, so the chain after this operator is
never entered by two coroutines at once.

Watermarks and idleness changes queue up behind the calls that arrived
before them. Ordered, they simply wait their turn in the queue. Unordered,
they close a *segment*: results within a segment go out as they complete,
but a segment's watermark goes out only when all of its calls have, and no
result of a later segment overtakes it (Flink's unordered queue).

With ``concurrency=1`` there is nothing to overlap, so the calls are simply
awaited one after another, without tasks or an emitter.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from streamlet.errors import InvalidKeyError, OperatorTimeoutError
from streamlet.state.keys import is_valid_key

from .batch import Batch
from .operator import DeadLetter, Operator, OperatorContext

KINDS = ("map", "filter", "flat_map", "key_by", "sink")


class CallTimedOut(Exception):
    """Our own timeout fired (as opposed to a TimeoutError the user raised)."""


async def call_within(timeout_ms: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Await ``fn(*args)``, raising ``CallTimedOut`` only if *our* deadline passed."""
    scope = asyncio.timeout(timeout_ms / 1000)
    try:
        async with scope:
            return await fn(*args)
    except TimeoutError:
        if scope.expired():
            raise CallTimedOut() from None
        raise


class _Marker:
    """A watermark or idleness change waiting for the calls before it."""

    __slots__ = ("send",)

    def __init__(self, send: Callable[[], Awaitable[None]]) -> None:
        self.send = send


class _Segment:
    """Unordered mode: the calls between two markers, and the marker closing them."""

    __slots__ = ("done", "marker", "running")

    def __init__(self) -> None:
        self.running = 0
        self.done: deque[list[Any]] = deque()
        self.marker: _Marker | None = None


class AsyncCallOperator(Operator):
    def __init__(self, name: str, kind: str, fn: Callable[..., Any], *, is_async_gen: bool,
                 concurrency: int, ordered: bool, timeout_ms: int | None,
                 on_error: str) -> None:
        assert kind in KINDS
        self.name = name
        self.kind = kind
        self.fn = fn
        self.is_async_gen = is_async_gen
        self.concurrency = concurrency
        self.ordered = ordered
        self.timeout_ms = timeout_ms
        self.on_error = on_error
        # An entry is [task, value, key, timestamp, keyed]. Ordered mode keeps
        # entries and markers in one queue in arrival order; unordered mode
        # keeps segments, each closed by a marker.
        self._queue: deque[list[Any] | _Marker] = deque()
        self._segments: deque[_Segment] = deque()
        self._unemitted: set[asyncio.Task[Any]] = set()  # calls whose result is not out yet
        self._count = 0
        self._ending = False
        self._wake: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._emitter: asyncio.Task[None] | None = None

    def open(self, ctx: OperatorContext) -> None:
        if self.concurrency > 1:
            self._emitter = ctx.spawn(self._emit_loop(), f"{self.name} emitter")

    # -- one call ---------------------------------------------------------------

    async def _call(self, value: Any) -> Any:
        if self.timeout_ms is None:
            return await self._invoke(value)
        return await call_within(self.timeout_ms, self._invoke, value)

    async def _invoke(self, value: Any) -> Any:
        if self.is_async_gen:
            return [item async for item in self.fn(value)]
        result = await self.fn(value)
        if self.kind == "flat_map":
            return list(result)
        return result

    def _error(self, value: Any, exc: BaseException) -> BaseException:
        if isinstance(exc, CallTimedOut):
            return OperatorTimeoutError(self.name, value, self.timeout_ms or 0)
        return exc

    # -- shaping results into batches --------------------------------------------

    def _collect(self, entries: list[list[Any]], has_keys: bool, has_ts: bool
                 ) -> tuple[Batch, list[DeadLetter]]:
        """Turn finished entries ``[result_or_exc, ok, value, key, ts]`` into a batch."""
        kind = self.kind
        values: list[Any] = []
        keys: list[Any] | None = [] if has_keys or kind == "key_by" else None
        tss: list[int] | None = [] if has_ts else None
        dead: list[DeadLetter] = []
        for result, ok, value, key, ts in entries:
            if not ok:
                self._fail(value, key, ts, has_keys, self._error(value, result), dead)
                continue
            if kind == "map":
                values.append(result)
            elif kind == "filter":
                if not result:
                    continue
                values.append(value)
            elif kind == "key_by":
                if not is_valid_key(result):
                    self._fail(value, key, ts, has_keys, InvalidKeyError(self.name, result), dead)
                    continue
                values.append(value)
                if keys is not None:
                    keys.append(result)
                if tss is not None:
                    tss.append(ts)
                continue
            elif kind == "flat_map":
                n = len(result)
                values.extend(result)
                if keys is not None:
                    keys.extend([key] * n)
                if tss is not None:
                    tss.extend([ts] * n)
                continue
            else:  # sink
                continue
            if keys is not None:
                keys.append(key)
            if tss is not None:
                tss.append(ts)
        return Batch(values, keys, tss), dead

    def _fail(self, value: Any, key: Any, ts: int | None, has_key: bool, exc: BaseException,
              dead: list[DeadLetter]) -> None:
        self.failed(Batch([value], [key] if has_key else None, None if ts is None else [ts]),
                    0, exc, None if self.on_error == "fail" else dead)

    async def _emit(self, entries: list[list[Any]], has_keys: bool, has_ts: bool) -> None:
        batch, dead = self._collect(entries, has_keys, has_ts)
        if dead:
            await self.emit_dead_letters(dead)
        if batch.values and self.kind != "sink":
            await self.output.push(batch)

    # -- the input side ----------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        if self._emitter is None:
            await self._process_sequentially(batch)
            return
        loop = asyncio.get_running_loop()
        keys = batch.keys
        tss = batch.timestamps
        call = self._call
        for i, value in enumerate(batch.values):
            while self._count >= self.concurrency:
                self._room = loop.create_future()
                await self._room
            task = loop.create_task(call(value))
            entry = [task, value, None if keys is None else keys[i],
                     None if tss is None else tss[i], keys is not None]
            self._count += 1
            self._unemitted.add(task)
            if self.ordered:
                self._queue.append(entry)
                if len(self._queue) == 1:
                    self._wake_emitter()
            else:
                segments = self._segments
                if not segments or segments[-1].marker is not None:
                    segments.append(_Segment())
                segment = segments[-1]
                segment.running += 1
                task.add_done_callback(functools.partial(self._finished, segment, entry))

    def _finished(self, segment: _Segment, entry: list[Any], task: asyncio.Task[Any]) -> None:
        segment.running -= 1
        segment.done.append(entry)
        self._wake_emitter()

    def _wake_emitter(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def on_watermark(self, timestamp: int) -> None:
        if self._emitter is None:
            await super().on_watermark(timestamp)
        else:
            self._enqueue_marker(_Marker(functools.partial(Operator.on_watermark, self, timestamp)))

    async def on_barrier(self, checkpoint_id: int) -> None:
        """In order with the results: those of records before the barrier go out
        first (the calls in flight are drained, not snapshotted), then the barrier."""
        if self._emitter is None:
            await super().on_barrier(checkpoint_id)
        else:
            self._enqueue_marker(_Marker(functools.partial(
                Operator.on_barrier, self, checkpoint_id)))

    async def on_status(self, idle: bool) -> None:
        if self._emitter is None:
            await super().on_status(idle)
        else:
            self._enqueue_marker(_Marker(functools.partial(Operator.on_status, self, idle)))

    def _enqueue_marker(self, marker: _Marker) -> None:
        if self.ordered:
            self._queue.append(marker)
        else:
            segments = self._segments
            if not segments or segments[-1].marker is not None:
                segments.append(_Segment())
            segments[-1].marker = marker
        self._wake_emitter()

    async def _process_sequentially(self, batch: Batch) -> None:
        keys = batch.keys
        tss = batch.timestamps
        entries: list[list[Any]] = []
        # Without a timeout or results to reshape, the user's coroutine is awaited directly.
        plain = self.timeout_ms is None and not self.is_async_gen and self.kind != "flat_map"
        call = self.fn if plain else self._call
        for i, value in enumerate(batch.values):
            try:
                entries.append([await call(value), True, value,
                                None if keys is None else keys[i], None if tss is None else tss[i]])
            except Exception as exc:
                entries.append([exc, False, value,
                                None if keys is None else keys[i], None if tss is None else tss[i]])
        await self._emit(entries, keys is not None, tss is not None)

    async def end_input(self) -> None:
        if self._emitter is not None:
            self._ending = True
            self._wake_emitter()
            await asyncio.wait((self._emitter,))
            self._emitter.result()  # re-raise the emitter's failure here too
        await self.end_outputs()

    # -- the output side ---------------------------------------------------------

    async def _emit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        step = self._step_ordered if self.ordered else self._step_unordered
        while True:
            progressed = await step()
            if progressed:
                continue
            if self._ending and not self._count and not self._queue and not any(
                    s.marker is not None or s.done for s in self._segments):
                return
            if self.ordered and self._queue:  # the head is a call still running
                head = self._queue[0]
                assert not isinstance(head, _Marker)
                await asyncio.wait((head[0],))
                continue
            self._wake = loop.create_future()
            await self._wake
            self._wake = None

    async def _step_ordered(self) -> bool:
        """Emit what is ready at the head of the queue; False if nothing was."""
        queue = self._queue
        ready: list[list[Any]] = []
        while queue:
            head = queue[0]
            if isinstance(head, _Marker):
                if ready:
                    break  # the records before the marker go first
                queue.popleft()
                await head.send()
                return True
            if not head[0].done():
                break
            queue.popleft()
            ready.append(head)
        if not ready:
            return False
        await self._emit_entries(ready)
        return True

    async def _step_unordered(self) -> bool:
        segments = self._segments
        if not segments:
            return False
        head = segments[0]
        if head.done:
            ready = list(head.done)
            head.done.clear()
            await self._emit_entries(ready)
            return True
        if head.marker is not None and not head.running:
            segments.popleft()
            await head.marker.send()
            return True
        return False

    async def _emit_entries(self, ready: list[list[Any]]) -> None:
        self._count -= len(ready)
        unemitted = self._unemitted
        for entry in ready:
            unemitted.discard(entry[0])
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        await self._emit([self._as_result(e) for e in ready], ready[0][4],
                         ready[0][3] is not None)

    @staticmethod
    def _as_result(entry: list[Any]) -> list[Any]:
        task, value, key, ts, _ = entry
        if task.cancelled():
            return [asyncio.CancelledError(), False, value, key, ts]
        exc = task.exception()
        if exc is not None:
            return [exc, False, value, key, ts]
        return [task.result(), True, value, key, ts]

    async def close(self) -> None:
        tasks = list(self._unemitted)
        self._unemitted.clear()
        self._queue.clear()
        self._segments.clear()
        for task in tasks:
            task.cancel()
        if tasks:  # let each call's own cleanup (its finally blocks) finish first
            await asyncio.wait(tasks)
        for task in tasks:  # a call that failed before the job stopped: nobody will read it
            if not task.cancelled():
                task.exception()
