"""What checkpoints cost: W2 with and without them, and a restore of 1M keys.

    python -m benchmarks.checkpoints [--events N] [--repeat R] [--keys K]

1. W2 (tumbling windows, ``benchmarks.workloads``) over ``--events`` events,
   best of ``--repeat`` runs each, interleaved: without checkpointing, and
   with ``Checkpointing(interval=1 s)`` on SQLite storage in a fresh
   temporary directory per run. Reports the throughput ratio (target
   >= 0.85x), and the checkpoints the runs completed: how many, how long
   each took from its start until durable, and how big they were.
2. A keyed running reduce over ``--keys`` distinct keys, checkpointed at
   the end of its input (the final checkpoint of a bounded job); then it
   is restored from storage. Reports the final checkpoint's size and
   duration, and the restore time in its two steps: reading and verifying
   the checkpoint, and putting the keys back into the operator's state.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import streamlet as sl
from benchmarks.workloads import (
    W2_SIZE_MS,
    W2P_STRATEGY,
    CountSum,
    Event,
    generate_events,
    w2p_timestamp,
    w2p_user,
)
from streamlet.core.checkpoints import CheckpointStats
from streamlet.state.checkpoint_storage import open_storage


def w2_run(events: list[Event], storage: str | None) -> tuple[float, sl.JobResult]:
    out: list[Any] = []
    checkpointing = None if storage is None else sl.Checkpointing(interval=1_000,
                                                                    storage=storage)
    p = sl.Pipeline("w2", checkpointing=checkpointing)
    (p.from_iterable(events)
     .assign_timestamps(w2p_timestamp, W2P_STRATEGY)
     .key_by(w2p_user)
     .window(sl.windows.Tumbling(W2_SIZE_MS))
     .aggregate(CountSum(), name="windows")
     .sink(out.append))
    gc.collect()
    start = time.perf_counter()
    result = p.run()
    return time.perf_counter() - start, result


def many_keys_run(keys: int, storage: str) -> tuple[float, sl.JobResult]:
    p = sl.Pipeline("keys", checkpointing=sl.Checkpointing(storage=storage))
    (p.from_iterable(range(keys)).key_by(lambda k: k)
     .reduce(lambda a, b: a + b, name="sums").sink(lambda v: None))
    gc.collect()
    start = time.perf_counter()
    result = p.run()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    print(f"generating {args.events:,} events ...", flush=True)
    events = generate_events(args.events)
    plain: list[float] = []
    checkpointed: list[float] = []
    stats: list[CheckpointStats] = []
    for _ in range(args.repeat):
        seconds, _ = w2_run(events, None)
        plain.append(seconds)
        with tempfile.TemporaryDirectory(prefix="w2-ckpt-") as directory:
            seconds, result = w2_run(events, f"sqlite:///{Path(directory) / 'c.db'}")
        checkpointed.append(seconds)
        stats.extend(c for c in result.checkpoints)
    best_plain, best_checkpointed = min(plain), min(checkpointed)
    ratio = best_plain / best_checkpointed
    print(f"W2, {args.events:,} events, best of {args.repeat}:")
    print(f"  no checkpoints      {args.events / best_plain:>12,.0f} ev/s")
    print(f"  checkpoints every 1 s {args.events / best_checkpointed:>10,.0f} ev/s   "
          f"ratio {ratio:.3f}x  target >=0.85x {'ok' if ratio >= 0.85 else 'MISS'}")
    periodic = [c for c in stats if c.size and c.duration_ms is not None]
    if periodic:
        durations = [c.duration_ms for c in periodic]
        sizes = [c.size for c in periodic]
        print(f"  {len(periodic)} checkpoints in {args.repeat} runs: duration median "
              f"{statistics.median(durations)} ms (max {max(durations)} ms), size median "
              f"{statistics.median(sizes) / 1e6:.2f} MB (max {max(sizes) / 1e6:.2f} MB)")

    with tempfile.TemporaryDirectory(prefix="keys-ckpt-") as directory:
        url = f"sqlite:///{Path(directory) / 'c.db'}"
        first, result = many_keys_run(args.keys, url)
        final = result.checkpoints[-1]
        read, put = restore_once(url)
    print(f"{args.keys:,} keys in a keyed reduce: run {first:.2f} s; final checkpoint "
          f"{final.size / 1e6:.1f} MB in {final.duration_ms} ms")
    print(f"  restore: read and verify {read * 1000:.0f} ms, put back into the operator "
          f"{put * 1000:.0f} ms")


def restore_once(url: str) -> tuple[float, float]:
    """The two steps of a restore, timed apart: the storage's latest()
    (read, checksum, decode) and the operator's restore_state()."""
    from streamlet.core.reduce import ReduceOperator  # noqa: PLC0415  # internals, timed

    with open_storage(url) as storage:
        start = time.perf_counter()
        snapshot = storage.latest("keys")
        read = time.perf_counter() - start
    assert snapshot is not None
    operator = ReduceOperator("sums", lambda a, b: a + b, is_async=False, on_error="fail")
    start = time.perf_counter()
    operator.restore_state(snapshot.operators["sums"], snapshot.max_parallelism)
    put = time.perf_counter() - start
    assert len(operator.state) > 0
    return read, put

if __name__ == "__main__":
    main()
