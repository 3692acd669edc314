"""Stable key hashing: the same key lands in the same key group in every
process, run and version, whatever ``PYTHONHASHSEED`` says.

Python's ``hash()`` is salted per process for str and bytes, so it cannot
route records between worker processes or name the key group a snapshot
belongs to. Instead a key is encoded canonically and hashed with CRC-32,
whose bits are then spread with murmur3's finaliser (as Flink does with
``MathUtils.murmurHash``) before taking the key group.

The encoding respects Python equality: ``1``, ``1.0`` and ``True`` are one
dict key, so they must be one key group too, or a key would move between
workers depending on which spelling arrived.

Computing a key group costs far more than a dict lookup, so the single
process hot path never does it: it is computed where records cross
processes and where state is written to a snapshot.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

from streamlet.errors import InvalidKeyError
from streamlet.native import speedups

DEFAULT_MAX_PARALLELISM = 128

_SCALARS = (str, int, float, bytes, bool, type(None))
_pack_double = struct.Struct(">d").pack
_crc32 = zlib.crc32


def is_valid_key(key: Any) -> bool:
    t = type(key)
    if t is tuple:
        return all(is_valid_key(k) for k in key)
    return t in _SCALARS


def _encode(key: Any, out: bytearray) -> None:
    t = type(key)
    if t is bool:
        key = int(key)
        t = int
    elif t is float:
        if key.is_integer():
            key = int(key)
            t = int
        elif math.isnan(key):
            out += b"n"
            return
    if t is str:
        data = key.encode("utf-8", "surrogatepass")
        out += b"s" + len(data).to_bytes(4, "big") + data
    elif t is int:
        length = (key.bit_length() + 8) // 8
        out += b"i" + length.to_bytes(4, "big") + key.to_bytes(length, "big", signed=True)
    elif t is float:
        out += b"f" + _pack_double(key)
    elif t is bytes:
        out += b"b" + len(key).to_bytes(4, "big") + key
    elif key is None:
        out += b"0"
    elif t is tuple:
        out += b"t" + len(key).to_bytes(4, "big")
        for item in key:
            _encode(item, out)
    else:
        raise TypeError(type(key).__name__)


def encode_key(key: Any) -> bytes:
    """The canonical bytes of a key; equal keys give equal bytes."""
    out = bytearray()
    try:
        _encode(key, out)
    except TypeError:
        raise InvalidKeyError("key_by", key) from None
    return bytes(out)


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def stable_hash(key: Any) -> int:
    """A 32-bit hash of a key that is the same in every process."""
    return _fmix32(zlib.crc32(encode_key(key)))


def key_group(key: Any, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The key group, in ``range(max_parallelism)``, that owns ``key``.

    Snapshots compute this for every key of an operator: in C for int and
    str keys where streamlet's speedups were built (``streamlet.native``)."""
    if speedups is not None:
        return speedups.key_group(key, max_parallelism, key_group_python)
    return key_group_python(key, max_parallelism)


def key_group_python(key: Any, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """``key_group`` in Python: ``stable_hash`` written out, with the
    encodings of int and str keys inline. The C speedups compute the same
    for int and str keys and call this for any other."""
    t = type(key)
    if t is int:
        length = (key.bit_length() + 8) >> 3
        data = b"i" + length.to_bytes(4, "big") + key.to_bytes(length, "big", signed=True)
    elif t is str:
        raw = key.encode("utf-8", "surrogatepass")
        data = b"s" + len(raw).to_bytes(4, "big") + raw
    else:
        data = encode_key(key)
    h = _crc32(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h % max_parallelism


def key_group_range(worker: int, workers: int,
                    max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> range:
    """The contiguous key groups that worker ``worker`` of ``workers`` owns.

    Flink's ``KeyGroupRangeAssignment``: the ranges cover every group once,
    differ in size by one at most, and stay contiguous, so a checkpoint taken
    with one number of workers is cut along key groups for another
    (rescaling) without reading any key."""
    if not 0 <= worker < workers <= max_parallelism:
        raise ValueError(f"worker {worker} of {workers} (max_parallelism {max_parallelism})")
    start = (worker * max_parallelism + workers - 1) // workers
    stop = ((worker + 1) * max_parallelism + workers - 1) // workers
    return range(start, stop)


def worker_for_key_group(group: int, workers: int,
                         max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """Which of ``workers`` owns key group ``group``: the inverse of
    ``key_group_range``, computed without a search (a shuffle routes every
    batch with it)."""
    return group * workers // max_parallelism
