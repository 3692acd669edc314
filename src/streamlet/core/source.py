"""The one seam every source implements."""

from __future__ import annotations

from .batch import Batch


class SourceReader:
    """Reads one source split, a batch at a time.

    ``next_batch`` returns ``None`` when a bounded input has ended. It may
    return an empty batch when nothing is available yet but the source wants
    the task to take a turn (an unbounded source that is idle).
    """

    name: str = "source"

    async def next_batch(self) -> Batch | None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the reader holds; called once, however the job ends."""
