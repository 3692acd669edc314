"""streamlet's C speedups, where they were built: the shuffle's per-record work.

A shuffle between worker processes touches every record again to find the
worker that owns its key, and every record that crosses twice more, to
encode and decode it. In Python each of those is a dict lookup or an object
walk that misses the cache, and together they cost about as much as the
rest of a simple keyed job (docs/performance.md, "Workers"). The C module
``streamlet.native._speedups`` does that work; it is built when streamlet is
installed where a C compiler is, and is optional: without it, or with
``STREAMLET_PURE_PYTHON=1`` in the environment, every caller runs its pure
Python code, which gives the same results (the property tests compare them).

``speedups`` is the module, or None.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

KeyGroupOf = Callable[[Any, int], int]
Part = tuple[list[Any], list[Any], list[int] | None]


class Speedups(Protocol):
    """What ``streamlet.native._speedups`` offers (its C source says how)."""

    def key_group(self, key: Any, max_parallelism: int, fallback: KeyGroupOf, /) -> int:
        """``streamlet.state.keys.key_group``, for exact int and str keys in C;
        ``fallback(key, max_parallelism)`` for any other key."""

    def cut(self, values: list[Any], keys: list[Any], timestamps: list[int] | None,
            workers: int, max_parallelism: int, fallback: KeyGroupOf, /
            ) -> list[Part | None]:
        """A keyed batch's columns cut by the worker that owns each key, in order:
        one part per worker, None where it gets nothing."""

    def encode_records(self, values: list[Any], keys: list[Any] | None,
                       timestamps: list[int] | None, /) -> bytes | None:
        """Flat dicts with the same str keys in the same order and int64, float,
        str, bool or None values, as bytes; None when any record is not one."""

    def decode_records(self, data: bytes, start: int, /
                       ) -> tuple[list[Any], list[Any] | None, list[int] | None]:
        """What ``encode_records`` was given, from ``data[start:]``; ValueError
        when those bytes are not its output."""


def _load() -> Speedups | None:
    if os.environ.get("STREAMLET_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from streamlet.native import _speedups  # noqa: PLC0415
    except ImportError:
        return None
    return _speedups


speedups: Speedups | None = _load()
