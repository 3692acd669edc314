"""What ``collect()`` gathered in a worker, on its way back to the coordinator.

A windowed job collects one ``WindowResult`` per key and window, and pickle
makes and rebuilds each through a Python call (``__getnewargs__``,
``__new__``): ~3 us per result out and ~2 us back. As three columns (keys,
windows, values) pickle handles them in C, and ``map`` rebuilds the results
in C: ~0.3 and ~0.6 us. With two workers collecting 950,000 results between
them, that is seconds of ``Pipeline.run()``.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any

from streamlet.errors import short_repr
from streamlet.windows.operator import WindowResult

from .codec import CodecError


def pack_collected(values: list[Any]) -> tuple[Any, ...]:
    """``values`` ready to pickle: window results as columns, anything else as is."""
    if values and set(map(type, values)) == {WindowResult}:
        return ("windows", list(map(itemgetter(0), values)),
                list(map(itemgetter(1), values)), list(map(itemgetter(2), values)))
    return ("values", values)


def unpack_collected(packed: Any) -> list[Any]:
    """The list ``pack_collected`` packed."""
    match packed:
        case ("values", list() as values):
            return values
        case ("windows", list() as keys, list() as windows, list() as values) if (
                len(keys) == len(windows) == len(values)):
            rows = zip(keys, windows, values, strict=True)
            return list(map(_new_tuple, repeat(WindowResult), rows))
    raise CodecError(f"collected values from a worker are not what pack_collected makes: "
                     f"{short_repr(packed, 80)}")


_new_tuple = tuple.__new__
