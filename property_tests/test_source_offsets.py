"""Where a failed record was read, against a brute-force oracle.

A source hands out batches of one split with an offset per record (as the
Kafka source does); a random chain of ``map``, ``filter`` and ``flat_map``
with failing functions (``on_error="dead_letter"``) follows. Every dead
letter must name the offset of the source record it came from: the oracle
runs the same chain one record at a time, carrying each record's offset by
hand.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import streamlet as sl
from streamlet.core.batch import Batch
from streamlet.core.source import Source, SourceReader

SPLIT = ("payments", 3)

# each step: (kind, parameter); a value v fails the step when v % fails == 0
steps = st.lists(st.tuples(st.sampled_from(["map", "filter", "flat_map"]),
                           st.integers(min_value=2, max_value=7)), min_size=1, max_size=4)


class OffsetSource(Source):
    def __init__(self, batches: list[list[tuple[int, int]]]) -> None:
        self.batches = batches

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        return OffsetReader(self.batches)


class OffsetReader(SourceReader):
    def __init__(self, batches: list[list[tuple[int, int]]]) -> None:
        self.batches = list(batches)

    async def next_batch(self) -> Batch | None:
        if not self.batches:
            return None
        records = self.batches.pop(0)
        return Batch([v for v, _ in records], None, None, SPLIT, [o for _, o in records])


def step_function(kind: str, fails: int) -> Any:
    def check(v: int) -> None:
        if v % fails == 0:
            raise ValueError(v)
    if kind == "map":
        def mapped(v: int) -> int:
            check(v)
            return v + 1
        return mapped
    if kind == "filter":
        def kept(v: int) -> bool:
            check(v)
            return v % 3 != 1
        return kept

    def spread(v: int) -> list[int]:
        check(v)
        return [v + 1, v + 2][: v % 3]
    return spread


def oracle(records: list[tuple[int, int]], chain: list[tuple[str, int]]
           ) -> list[tuple[int, Any, int]]:
    """(step index, value, offset) of every failure."""
    failures = []
    current = list(records)
    for index, (kind, fails) in enumerate(chain):
        fn = step_function(kind, fails)
        after = []
        for value, offset in current:
            try:
                result = fn(value)
            except ValueError:
                failures.append((index, value, offset))
                continue
            if kind == "map":
                after.append((result, offset))
            elif kind == "filter":
                if result:
                    after.append((value, offset))
            else:
                after.extend((r, offset) for r in result)
        current = after
    return sorted(failures)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(min_value=0, max_value=1_000), max_size=60),
       cut=st.integers(min_value=1, max_value=16), chain=steps,
       first=st.integers(min_value=0, max_value=10**9))
def test_every_dead_letter_names_the_offset_it_was_read_at(
        values: list[int], cut: int, chain: list[tuple[str, int]], first: int) -> None:
    records = [(v, first + 2 * i) for i, v in enumerate(values)]  # offsets with gaps
    batches = [records[i:i + cut] for i in range(0, len(records), cut)]
    p = sl.Pipeline("offsets", batch_size=cut)
    stream = p.from_source(OffsetSource(batches))
    letters: list[sl.Collected] = []
    for index, (kind, fails) in enumerate(chain):
        stream = getattr(stream, kind)(step_function(kind, fails), on_error="dead_letter",
                                       name=f"step{index}")
        letters.append(stream.dead_letters().collect())
    stream.collect()
    p.run()
    found = sorted((index, d.value, d.source[1]) for index, got in enumerate(letters)
                   for d in got if d.source is not None and d.source[0] == SPLIT)
    assert all(d.source is not None for got in letters for d in got)
    assert found == oracle(records, chain)
