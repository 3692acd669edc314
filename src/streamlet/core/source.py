"""The one seam every source implements."""

from __future__ import annotations

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

    async def close(self) -> None:
        """Release what the reader holds; called once, however the job ends."""


class Source:
    """A source a pipeline can read (``Pipeline.from_source``)."""

    def create_reader(self, name: str, batch_size: int) -> SourceReader:
        raise NotImplementedError
