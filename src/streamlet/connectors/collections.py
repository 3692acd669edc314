"""Sources over Python iterables, sync and async.

A sync iterable is read a batch at a time with ``islice`` (or plain slicing
for a list), so the source adds nothing per record. An async iterable is
drained by a pump task into a buffer, and each batch takes whatever has
arrived: a fast async generator yields full batches, a trickle yields small
ones without waiting for a batch to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Any

from streamlet.core.batch import Batch
from streamlet.core.source import SourceReader
from streamlet.errors import CheckpointError, SourceError


def _after(count: int) -> str:
    return f"after {count} record{'' if count == 1 else 's'}"


class IterableReader(SourceReader):
    def __init__(self, name: str, iterable: Iterable[Any], batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size
        self._source = iterable
        self._list = iterable if isinstance(iterable, (list, tuple)) else None
        self._iterator: Iterator[Any] | None = None
        self._error: SourceError | None = None
        self._position = 0

    async def next_batch(self) -> Batch | None:
        start = self._position
        if self._list is not None:
            chunk = self._list[start:start + self.batch_size]
            values = chunk if type(chunk) is list else list(chunk)
        else:
            if self._error is not None:
                raise self._error
            values = []
            try:
                if self._iterator is None:
                    self._iterator = iter(self._source)
                values.extend(islice(self._iterator, self.batch_size))
            except Exception as exc:
                # deliver the records read before the failure, then fail
                self._error = SourceError(
                    self.name, _after(start + len(values)), exc)
                self._error.__cause__ = exc
                if not values:
                    raise self._error from exc
        if not values:
            return None
        self._position = start + len(values)
        return Batch(values)

    def position(self) -> int:
        return self._position

    def seek(self, position: Any) -> None:
        """Skip the first ``position`` records: the iterable must give the same
        records in the same order as in the run that took the checkpoint."""
        if self._list is None:
            self._iterator = iter(self._source)
            skipped = sum(1 for _ in islice(self._iterator, position))
            if skipped < position:
                raise CheckpointError(
                    f"source {self.name!r} resumes after {position} records, but its "
                    f"iterable has only {skipped}: give it the same records as the run "
                    "that took the checkpoint")
        elif position > len(self._list):
            raise CheckpointError(
                f"source {self.name!r} resumes after {position} records, but its list has "
                f"only {len(self._list)}: give it the same records as the run that took "
                "the checkpoint")
        self._position = position

    async def close(self) -> None:
        # a generator's finally blocks run now, not whenever it is collected
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


class AsyncIterableReader(SourceReader):
    def __init__(self, name: str, iterable: AsyncIterable[Any], batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size
        self._iterable = iterable
        self._buffer: deque[Any] = deque()
        self._finished = False
        self._error: BaseException | None = None
        self._pump: asyncio.Task[None] | None = None
        self._data: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._position = 0

    async def _run_pump(self) -> None:
        buffer = self._buffer
        limit = self.batch_size
        iterator: AsyncIterator[Any] = aiter(self._iterable)
        try:
            async for item in iterator:
                buffer.append(item)
                self._signal_data()
                while len(buffer) >= limit:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
        except Exception as exc:
            self._error = exc
        finally:
            self._finished = True
            self._signal_data()

    def _signal_data(self) -> None:
        data = self._data
        if data is not None and not data.done():
            data.set_result(None)

    async def next_batch(self) -> Batch | None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(
                self._run_pump(), name=f"source {self.name} pump")
        buffer = self._buffer
        while not buffer:
            if self._finished:
                if self._error is not None:
                    raise SourceError(self.name, _after(self._position),
                                      self._error) from self._error
                return None
            self._data = asyncio.get_running_loop().create_future()
            await self._data
        n = min(len(buffer), self.batch_size)
        values = [buffer.popleft() for _ in range(n)]
        self._position += n
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        return Batch(values)

    async def close(self) -> None:
        pump = self._pump
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.wait((pump,))
        aclose = getattr(self._iterable, "aclose", None)
        if aclose is not None:
            # an async generator still running in its pump cannot be closed twice
            with contextlib.suppress(RuntimeError):
                await aclose()


class PartitionsReader(SourceReader):
    """Placeholder: being written (issue 7)."""

    def __init__(self, name: str, partitions: list[Iterable[Any]], batch_size: int) -> None:
        raise NotImplementedError("from_partitions is being written")
