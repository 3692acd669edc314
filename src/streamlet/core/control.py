"""Control elements travel in-band between batches on channels.

They are ordered with the data around them: an end of input is never
overtaken by a batch sent before it.
"""

from __future__ import annotations

from typing import Final


class EndOfInput:
    """The producer of this channel will send nothing more."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EndOfInput"


END_OF_INPUT: Final = EndOfInput()
