"""Sources over Python iterables, sync and async.

A sync iterable is read a batch at a time with ``islice`` (or plain slicing
for a list), so the source adds nothing per record. An async iterable is
drained by a pump task into a buffer, and each batch takes whatever has
arrived: a fast async generator yields full batches, a trickle yields small
ones without waiting for a batch to fill. ``from_partitions`` reads several
iterables as the splits of one source, spread over the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from streamlet.core.batch import Batch
from streamlet.core.source import SourceReader
from streamlet.errors import CheckpointError, SourceError


def reads_partition(partition: int, subtask: int, parallelism: int) -> bool:
    """Whether subtask ``subtask`` of ``parallelism`` reads ``partition``."""
    return partition % parallelism == subtask


class Partitions(list[Any]):
    """``from_partitions``' partitions. A pipeline sent to its workers by value
    sends each worker only the partitions it reads (``for_worker``): with every
    partition in every worker, N workers would hold N copies of the input."""

    def for_worker(self, worker: int, workers: int) -> list[Any]:
        return [p if reads_partition(i, worker, workers) else ReadElsewhere(i)
                for i, p in enumerate(self)]


class ReadElsewhere:
    """In a worker, the place of a partition that another worker reads."""

    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError(f"partition {self.partition} was sent only to the worker that "
                           "reads it, and this worker does not")


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
    """Several partitions, each a split of its own, as a Kafka topic's are.

    Every partition the reader owns is announced first (an empty batch naming
    it), so that a partition that has not delivered yet holds event time back
    downstream; then the owned partitions are read round robin, a batch at a
    time, each batch carrying its partition index as ``split``. Subtask ``s``
    of ``n`` owns the partitions ``p`` with ``p % n == s``. The position is the
    number of records read from each owned partition.
    """

    def __init__(self, name: str, partitions: list[Iterable[Any]], batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size
        self._partitions = partitions
        self._lists: list[Sequence[Any] | None] = [
            p if isinstance(p, (list, tuple)) else None for p in partitions]
        self._owned = list(range(len(partitions)))
        self._restored: dict[int, int] = {}
        self._positions = dict.fromkeys(self._owned, 0)
        self._iterators: dict[int, Iterator[Any]] = {}
        self._errors: dict[int, SourceError] = {}
        self._turns: deque[int] | None = None  # owned partitions not yet ended, in turn
        self._announce: deque[int] = deque()

    def reads_on(self, subtask: int, parallelism: int) -> bool:
        return any(reads_partition(p, subtask, parallelism)
                   for p in range(len(self._partitions)))

    def assign(self, subtask: int, parallelism: int) -> bool:
        self._owned = [p for p in range(len(self._partitions))
                       if reads_partition(p, subtask, parallelism)]
        self._positions = {p: self._restored.get(p, 0) for p in self._owned}
        return bool(self._owned)

    def position(self) -> dict[int, int]:
        return dict(self._positions)

    def seek(self, position: Any) -> None:
        """Resume each partition after the records ``position`` counts: the
        partitions must give the same records in the same order as in the run
        that took the checkpoint (a partition's iterable is skipped when it is
        first read)."""
        restored = {int(p): int(n) for p, n in dict(position).items()}
        for p, n in restored.items():
            if not 0 <= p < len(self._partitions):
                raise CheckpointError(
                    f"source {self.name!r} resumes partition {p}, but it has only "
                    f"{len(self._partitions)} partitions: give it the same partitions as "
                    "the run that took the checkpoint")
            items = self._lists[p]
            if items is not None and n > len(items):
                raise CheckpointError(
                    f"source {self.name!r} resumes partition {p} after {n} records, but it "
                    f"has only {len(items)}: give it the same records as the run that took "
                    "the checkpoint")
        self._restored = restored
        self._positions = {p: restored.get(p, 0) for p in self._owned}

    def merge_positions(self, positions: list[Any]) -> dict[int, int]:
        """Each old subtask counted its own partitions: together, all of them."""
        merged: dict[int, int] = {}
        for position in positions:
            if position:
                merged.update(position)
        return merged

    def _start(self) -> deque[int]:
        """The owned partitions with records left (a list's are known), announced
        before any record is read."""
        turns = deque(p for p in self._owned if (items := self._lists[p]) is None
                      or self._positions[p] < len(items))
        self._announce.extend(turns)
        self._turns = turns
        return turns

    async def next_batch(self) -> Batch | None:
        turns = self._turns if self._turns is not None else self._start()
        if self._announce:
            return Batch([], split=self._announce.popleft())
        while turns:
            p = turns.popleft()
            values = self._read(p)
            if values:
                self._positions[p] += len(values)
                turns.append(p)
                return Batch(values, split=p)
        return None

    def _read(self, p: int) -> list[Any]:
        start = self._positions[p]
        items = self._lists[p]
        if items is not None:
            chunk = items[start:start + self.batch_size]
            return chunk if type(chunk) is list else list(chunk)
        error = self._errors.get(p)
        if error is not None:
            raise error
        values: list[Any] = []
        try:
            iterator = self._iterators.get(p)
            if iterator is None:
                iterator = self._iterators[p] = self._skip(p, start)
            values.extend(islice(iterator, self.batch_size))
        except CheckpointError:
            raise
        except Exception as exc:
            # deliver the records read before the failure, then fail
            error = self._errors[p] = SourceError(
                self.name, f"partition {p}, {_after(start + len(values))}", exc)
            error.__cause__ = exc
            if not values:
                raise error from exc
        return values

    def _skip(self, p: int, count: int) -> Iterator[Any]:
        iterator = iter(self._partitions[p])
        if count:
            skipped = sum(1 for _ in islice(iterator, count))
            if skipped < count:
                raise CheckpointError(
                    f"source {self.name!r} resumes partition {p} after {count} records, "
                    f"but its iterable has only {skipped}: give it the same records as the "
                    "run that took the checkpoint")
        return iterator

    async def close(self) -> None:
        # generators' finally blocks run now, not whenever they are collected
        for iterator in self._iterators.values():
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
