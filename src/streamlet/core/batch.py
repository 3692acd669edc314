"""Records travel in columnar batches.

A record is ``(value, key, timestamp)``. A batch keeps them as parallel lists
so that a fused ``map`` is one C-level loop over ``values`` and no tuple is
built per record. ``keys`` is ``None`` on a stream that is not keyed and
``timestamps`` is ``None`` on a stream that has none, which is the common,
fast case.

``split`` names the source split the records came from (a Kafka partition),
so that watermarks can be generated per split; operators between a source
and ``assign_timestamps`` keep it. ``offsets``, when the source has them
(Kafka), are each record's position in its split: the stateless operators
right after the source keep them, so that a record a user function fails on
can be traced back to its offset.

A batch is never mutated after it is emitted: a chain may hand the same batch
to several consumers (fan-out), so operators build new lists.
"""

from __future__ import annotations

from typing import Any


class Batch:
    __slots__ = ("keys", "offsets", "split", "timestamps", "values")

    def __init__(self, values: list[Any], keys: list[Any] | None = None,
                 timestamps: list[int] | None = None, split: Any = None,
                 offsets: list[int] | None = None) -> None:
        self.values = values
        self.keys = keys
        self.timestamps = timestamps
        self.split = split  # the source split (e.g. Kafka partition) the records came from
        self.offsets = offsets  # each record's offset in that split, when known

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return (f"Batch({len(self.values)} records, keyed={self.keys is not None}, "
                f"timestamped={self.timestamps is not None})")

    def slice(self, start: int, stop: int) -> Batch:
        keys = self.keys
        ts = self.timestamps
        offsets = self.offsets
        return Batch(self.values[start:stop],
                     None if keys is None else keys[start:stop],
                     None if ts is None else ts[start:stop], self.split,
                     None if offsets is None else offsets[start:stop])

    def record(self, index: int) -> tuple[Any, Any, int | None]:
        keys = self.keys
        ts = self.timestamps
        return (self.values[index],
                None if keys is None else keys[index],
                None if ts is None else ts[index])

    def origin(self, index: int) -> tuple[Any, int] | None:
        """``(split, offset)`` of ``self[index]``, when the source gave offsets."""
        offsets = self.offsets
        return None if offsets is None else (self.split, offsets[index])


def split(batch: Batch, max_size: int) -> list[Batch]:
    """Cut an oversized batch (a flat_map can multiply one) into bounded ones."""
    n = len(batch.values)
    if n <= max_size:
        return [batch]
    return [batch.slice(i, i + max_size) for i in range(0, n, max_size)]
