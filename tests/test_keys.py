"""Key groups are stable across processes and agree with Python equality."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import streamlet as sl
from streamlet.state.keys import encode_key, key_group, stable_hash

KEYS = ["", "user-42", "ключ", b"\x00\xff", 0, 1, -1, 2**70, -(2**70), 3.5, -0.25,
        None, True, False, ("a", 1), ("a", (1, None, b"x")), (), float("inf")]

_CHILD = """
import json, sys
from streamlet.state.keys import key_group
keys = [tuple(k) if isinstance(k, list) else k for k in json.loads(sys.argv[1])]
print(json.dumps([key_group(k) for k in keys] + [key_group(k, 7) for k in keys]))
"""


def _groups_in_subprocess(seed: str, keys: list[object]) -> list[int]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(keys)], env=env,
                         capture_output=True, text=True, check=True)
    groups: list[int] = json.loads(out.stdout)
    return groups


def test_same_groups_whatever_the_hash_seed() -> None:
    keys: list[object] = [f"user-{i}" for i in range(300)] + list(range(-50, 50))
    runs = [_groups_in_subprocess(seed, keys) for seed in ("0", "1", "12345", "random")]
    assert runs[0] == runs[1] == runs[2] == runs[3]
    assert runs[0][: len(keys)] == [key_group(k) for k in keys]  # and in this process


def test_golden_key_groups_never_change() -> None:
    # Snapshots are stored by key group: if these change, old checkpoints
    # restore keys into the wrong group. Change them only with a migration.
    keys = ["user-1", "user-2", 0, 1, None, ("a", 1)]
    assert [key_group(k) for k in keys] == [31, 89, 82, 79, 46, 25]
    assert stable_hash("user-1") == 0xD3BD379F
    assert [key_group(k, 7) for k in ["user-1", "ключ", b"x", 3.5]] == [2, 4, 4, 1]


@pytest.mark.parametrize(("a", "b"), [(1, 1.0), (1, True), (0, False), (0, -0.0),
                                       (("x", 1), ("x", 1.0)), (2**53, float(2**53))])
def test_equal_keys_share_a_group(a: object, b: object) -> None:
    assert a == b
    assert encode_key(a) == encode_key(b)
    assert key_group(a) == key_group(b)


@pytest.mark.parametrize(("a", "b"), [("1", 1), (b"a", "a"), ((1,), 1), (None, 0),
                                       (("a", "b"), ("ab",)), (1.5, 1)])
def test_different_keys_encode_differently(a: object, b: object) -> None:
    assert encode_key(a) != encode_key(b)


def test_groups_spread_evenly() -> None:
    counts = [0] * 128
    for i in range(128_000):
        counts[key_group(f"user-{i}")] += 1
    assert min(counts) > 800 and max(counts) < 1200  # 1000 expected per group


def test_group_is_in_range_for_any_max_parallelism() -> None:
    for m in (1, 2, 7, 128, 32768):
        assert all(0 <= key_group(k, m) < m for k in KEYS)


@pytest.mark.parametrize("bad", [[1], {"a": 1}, {1}, object(), ("a", [1]), frozenset()])
def test_unsupported_keys_are_refused(bad: object) -> None:
    with pytest.raises(sl.InvalidKeyError) as info:
        encode_key(bad)
    assert isinstance(info.value, TypeError)
    assert "keys must be str, int, float, bytes, bool, None or tuples" in str(info.value)
