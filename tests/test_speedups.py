"""The optional C speedups (streamlet.native): built where CI runs, and never
needed for a correct result.

The C functions are compared with their Python counterparts over random
input in property_tests/test_speedups.py; worker runs with them are every
test of test_workers.py (its records are flat dicts: they take the C path).
Here: that CI really has them, that a job gives the same result without
them, and what a process without them says about a batch packed by them.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from test_workers import EVENTS, oracle, windowed

import streamlet as sl
from streamlet.cluster import codec
from streamlet.core.batch import Batch
from streamlet.native import speedups
from streamlet.testing import run_collected, run_with_workers


def test_ci_builds_the_speedups() -> None:
    """A broken C build would otherwise fall back in silence, and every
    benchmark and worker test here would measure the pure-Python path."""
    if os.environ.get("CI", "").lower() not in ("true", "1"):
        pytest.skip("only CI must have a C compiler")
    assert speedups is not None, ("streamlet.native._speedups was not built: the install "
                                  "printed why (a C compiler and Python's headers are needed)")


def _which_path(record: Any) -> tuple[Any, ...]:
    from streamlet.native import speedups as in_the_worker  # noqa: PLC0415

    return (*record, in_the_worker is None)


def test_without_the_speedups_workers_compute_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """``STREAMLET_PURE_PYTHON=1`` reaches the workers (they inherit the
    environment), which then route and encode in Python."""
    monkeypatch.setenv("STREAMLET_PURE_PYTHON", "1")

    rows = run_collected(lambda: windowed(2, partitions=3), workers=2)
    assert Counter(map(tuple, rows)) == oracle()

    pipeline = sl.Pipeline("which-path", workers=2, batch_size=64)
    seen = (pipeline.from_partitions([EVENTS[:500], EVENTS[500:1000]])
            .key_by(lambda e: e["user"])
            .map(lambda e: (e["user"],))
            .map(_which_path)
            .collect())
    run_with_workers(pipeline, 2)
    assert len(seen) == 1000 and all(pure for *_, pure in seen)


def test_a_process_without_them_names_why_it_cannot_read_a_packed_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if speedups is None:
        pytest.skip("the C speedups were not built")
    kind, payload = codec.encode(Batch([{"a": 1}], ["k"], [5]))
    assert kind == codec.RECORDS
    monkeypatch.setattr(codec, "speedups", None)
    with pytest.raises(codec.CodecError, match="STREAMLET_PURE_PYTHON"):
        codec.decode(kind, payload)


def test_a_damaged_packed_batch_is_a_codec_error() -> None:
    if speedups is None:
        pytest.skip("the C speedups were not built")
    kind, payload = codec.encode(Batch([{"a": 1, "b": "x"}] * 3, None, [1, 2, 3], split=2))
    with pytest.raises(codec.CodecError, match="end early"):
        codec.decode(kind, payload[:-1])
    with pytest.raises(codec.CodecError, match="after the last record"):
        codec.decode(kind, payload + b"\x00")
    with pytest.raises(codec.CodecError, match="opens with"):
        codec.decode(kind, b"\x07" + payload[1:])
