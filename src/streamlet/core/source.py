"""The one seam every source implements."""

from __future__ import annotations

from typing import Any

from streamlet.errors import CheckpointError

from .batch import Batch
from .control import Watermark


class SourceReader:
    """Reads one source, a batch at a time.

    ``next_batch`` returns ``None`` when a bounded input has ended. It may
    return an empty batch when nothing is available yet but the source wants
    the task to take a turn (an unbounded source that is idle), and a
    ``Watermark`` when the source itself knows how far event time has got.
    """

    name: str = "source"

    async def next_batch(self) -> Batch | Watermark | None:
        raise NotImplementedError

    def position(self) -> Any:
        """Where the reader is, between two batches, as a picklable value: what
        ``seek`` needs to resume right after the last batch returned (an index, an
        offset per partition). ``None`` from a reader that cannot resume."""
        return None

    def seek(self, position: Any) -> None:
        """Resume from ``position`` (a value ``position()`` returned, in an earlier
        run), before the first ``next_batch``."""
        raise CheckpointError(
            f"source {self.name!r} cannot resume from a checkpoint: it has no position "
            "to seek to. Use a source that can (from_iterable, Kafka, or a Source whose "
            "reader implements position() and seek()), or start without the checkpoint.")

    def assign(self, subtask: int, parallelism: int) -> bool:
        """Take the splits that subtask ``subtask`` of ``parallelism`` reads (one
        per worker process), before the first ``next_batch``; False when it
        reads none, and its task ends at once."""
        return self.reads_on(subtask, parallelism)

    def reads_on(self, subtask: int, parallelism: int) -> bool:
        """Whether subtask ``subtask`` of ``parallelism`` reads anything of this
        source (asked of every subtask, without changing this reader). A
        source that is not split (a list, an async iterable) is read by
        subtask 0 alone, as Flink reads a collection."""
        return subtask == 0

    def merge_positions(self, positions: list[Any]) -> Any:
        """The position to ``seek`` to, from the positions of every subtask of a
        checkpoint taken with another number of workers (each read its own
        splits). The default: subtask 0's, the one that read a source that is
        not split."""
        return positions[0] if positions else None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint that last asked for ``position()`` is durable (a Kafka
        source commits those offsets to Kafka, for monitoring)."""

    async def close(self) -> None:
        """Release what the reader holds; called once, however the job ends."""


class Source:
    """A source a pipeline can read (``Pipeline.from_source``)."""

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        raise NotImplementedError
