"""Control elements travel in-band between batches on channels.

They are ordered with the data around them: a watermark or an end of input
is never overtaken by a batch sent before it.
"""

from __future__ import annotations

from typing import Final

MIN_WATERMARK: Final = -(2**63)
"""No event time has passed yet (Flink's ``Long.MIN_VALUE``)."""

MAX_WATERMARK: Final = 2**63 - 1
"""All event time has passed: sent when a bounded input ends, so every timer fires."""


class EndOfInput:
    """The producer of this channel will send nothing more."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EndOfInput"


END_OF_INPUT: Final = EndOfInput()


class Watermark:
    """No record with a timestamp at or below ``timestamp`` is expected any more."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: int) -> None:
        self.timestamp = timestamp

    def __repr__(self) -> str:
        return f"Watermark({self.timestamp})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Watermark) and other.timestamp == self.timestamp

    def __hash__(self) -> int:
        return hash(self.timestamp)


class WatermarkStatus:
    """An input going idle (sending nothing, so not holding watermarks back) or active."""

    __slots__ = ("idle",)

    def __init__(self, idle: bool) -> None:
        self.idle = idle

    def __repr__(self) -> str:
        return "IDLE" if self.idle else "ACTIVE"


IDLE: Final = WatermarkStatus(True)
ACTIVE: Final = WatermarkStatus(False)


class Barrier:
    """Checkpoint ``checkpoint_id``: everything before it is in the snapshot,
    nothing after it. Sources emit it between batches; a task with several
    inputs holds each input at its barrier until every input has delivered it."""

    __slots__ = ("checkpoint_id",)

    def __init__(self, checkpoint_id: int) -> None:
        self.checkpoint_id = checkpoint_id

    def __repr__(self) -> str:
        return f"Barrier({self.checkpoint_id})"
