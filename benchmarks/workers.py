"""W2 over worker processes: ``workers=2`` against ``workers=1``, same run.

    python -m benchmarks.workers [--events N] [--repeat R] [--partitions P]
                                 [--batch-size B] [--workers 1,2] [--ceiling]
                                 [--only-shuffle] [--pure-python] [--profile DIR]

The events are W2's (``generate_events`` then ``displace_events``, made once
before any timing), dealt round robin into ``P`` partitions (event ``i`` to
partition ``i % P``). The pipeline is W2's, read ``from_partitions``, so with
two workers each reads and stamps its own partitions (watermarks per
partition) and the ``key_by`` edge is a shuffle between the processes::

    from_partitions(parts) -> assign_timestamps(ts, bounded_out_of_orderness(2000))
      -> key_by(user) -> window(Tumbling(1000)) -> aggregate(CountSum()) -> collect()

For ``workers=1`` and ``workers=2``, interleaved, best of ``R``:

* **run()**: ``Pipeline.run()`` end to end, pipeline built inside the timed
  region. With two workers this includes pickling the pipeline (its
  partitions: every event) by value, spawning both processes, and sending
  the collected windows back to this process.
* **job**: with two workers, from the moment the coordinator sends *Start*
  to the moment the last worker says *finished* (every task has ended, the
  results not yet sent back), timed in this process by wrapping
  ``WorkerPool.start_job`` and ``ClusterJob._on_message`` here, in the
  benchmark, not in ``src``. With one worker there are no processes: the
  job time is the run() time.
* **CPU**: each process's user + system CPU seconds over the job (Linux
  ``/proc/<pid>/stat``); "by CPU" compares one worker's CPU with the busiest
  of two workers', the ratio if each had a core to itself.

``--ceiling`` also runs two processes at once, each W2 with one worker over
half the partitions and no shuffle (and one such process alone): the most
two workers could reach on this machine as it is at the time.

Every run's windows are checked against the plain W2 loop's, as multisets
(the partitions' watermarks fire windows in another order, never other
windows: no record is late). The plain loop (``w2_plain``, one process over
the undealt events) is timed too, as context.

Before all that, the shuffle's cost per record, in one process:
``ShuffleOutput``'s routing (cutting batches of W2's keyed, stamped events
by owning worker), the codec's encode of the part for the other worker and
its decode, with the C speedups (``streamlet.native``) and in pure Python.
The workers use the speedups where they were built; ``--pure-python`` runs
them without (``STREAMLET_PURE_PYTHON=1``). ``--profile DIR`` instead runs
one 2-worker job with each worker under cProfile (``STREAMLET_WORKER_PROFILE``)
and prints the top entries.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import streamlet as sl
from benchmarks.workloads import (
    W2_SIZE_MS,
    W2P_STRATEGY,
    CountSum,
    Event,
    displace_events,
    generate_events,
    w2_plain,
    w2p_timestamp,
    w2p_user,
    window_rows,
)
from streamlet.cluster import codec
from streamlet.cluster import shuffle as shuffle_module
from streamlet.cluster.coordinator import ClusterJob
from streamlet.cluster.shuffle import ShuffleOutput
from streamlet.cluster.worker import PROFILE_ENV
from streamlet.cluster.workers import WorkerPool
from streamlet.core.batch import Batch
from streamlet.native import speedups
from streamlet.state import keys as keys_module
from streamlet.state.keys import DEFAULT_MAX_PARALLELISM


def deal(events: list[Event], partitions: int) -> list[list[Event]]:
    """Event ``i`` to partition ``i % partitions``."""
    return [events[p::partitions] for p in range(partitions)]


def w2_partitions_pipeline(parts: list[list[Event]], workers: int,
                           batch_size: int) -> tuple[sl.Pipeline, list[Any]]:
    p = sl.Pipeline("w2-workers", workers=workers, batch_size=batch_size)
    out = (p.from_partitions(parts)
           .assign_timestamps(w2p_timestamp, W2P_STRATEGY)
           .key_by(w2p_user)
           .window(sl.windows.Tumbling(W2_SIZE_MS))
           .aggregate(CountSum())
           .collect())
    return p, out


class _Marks:
    """When the coordinator sent Start and when the last worker finished, and
    the CPU seconds each worker process had used at both moments."""

    start = finish = 0.0
    pids: ClassVar[list[int]] = []
    cpu_start: ClassVar[list[float]] = []
    cpu_finish: ClassVar[list[float]] = []


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


@contextmanager
def _job_timing() -> Iterator[type[_Marks]]:
    """Wrap the coordinator's start and Finished handling to time the job
    without the processes' start and the results' way back."""
    start_job = WorkerPool.start_job
    on_message = ClusterJob._on_message

    async def timed_start(pool: WorkerPool) -> None:
        _Marks.pids = [pid for pid in pool.pids if pid is not None]
        _Marks.cpu_start = [_cpu_seconds(pid) for pid in _Marks.pids]
        _Marks.start = time.perf_counter()
        await start_job(pool)

    def timed_message(job: ClusterJob, worker: int, message: Any) -> None:
        on_message(job, worker, message)
        if job._all_finished.done() and not _Marks.finish:
            _Marks.finish = time.perf_counter()
            _Marks.cpu_finish = [_cpu_seconds(pid) for pid in _Marks.pids]

    WorkerPool.start_job = timed_start  # type: ignore[method-assign, assignment]
    ClusterJob._on_message = timed_message  # type: ignore[method-assign, assignment]
    try:
        yield _Marks
    finally:
        WorkerPool.start_job = start_job  # type: ignore[method-assign]
        ClusterJob._on_message = on_message  # type: ignore[method-assign]


@dataclass
class Timing:
    run: float  # Pipeline.run(), wall seconds
    job: float  # Start to the last worker finished, wall seconds (one worker: run)
    cpu: list[float]  # each process's CPU seconds over the job


def run_once(parts: list[list[Event]], workers: int, batch_size: int
             ) -> tuple[Timing, list[Any]]:
    gc.collect()
    _Marks.start = _Marks.finish = 0.0
    cpu = time.process_time()
    begin = time.perf_counter()
    pipeline, out = w2_partitions_pipeline(parts, workers, batch_size)
    pipeline.run()
    elapsed = time.perf_counter() - begin
    if workers == 1:
        return Timing(elapsed, elapsed, [time.process_time() - cpu]), out
    busy = [b - a for a, b in zip(_Marks.cpu_start, _Marks.cpu_finish, strict=True)]
    return Timing(elapsed, _Marks.finish - _Marks.start, busy), out


def multiset(result: list[Any]) -> Counter[tuple[Any, ...]]:
    return Counter(window_rows(result))


def time_plain(events: list[Event], batch_size: int) -> tuple[float, list[Any]]:
    gc.collect()
    begin = time.perf_counter()
    result = w2_plain(events, batch_size)
    return time.perf_counter() - begin, result


def measure(events: list[Event], partitions: int, batch_size: int, repeat: int,
            worker_counts: Sequence[int]) -> dict[str, float]:
    """Best seconds: "plain", and per worker count w "run w", "job w", and
    "cpu w" (the busiest process's CPU seconds over the job)."""
    parts = deal(events, partitions)
    best: dict[str, float] = {}
    expected: Counter[tuple[Any, ...]] | None = None

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    with _job_timing():
        for attempt in range(repeat):
            seconds, result = time_plain(events, batch_size)
            keep("plain", seconds)
            if expected is None:
                expected = multiset(result)
            result = []
            for workers in worker_counts:  # interleaved: drift hits every side alike
                timing, out = run_once(parts, workers, batch_size)
                got = multiset(out)
                if got != expected:
                    raise RuntimeError(
                        f"workers={workers} computed {len(got)} distinct windows "
                        f"({sum(got.values())} in all), the plain loop {len(expected)}: "
                        f"{len(got - expected)} extra, {len(expected - got)} missing")
                out = []
                keep(f"run {workers}", timing.run)
                keep(f"job {workers}", timing.job)
                keep(f"cpu {workers}", max(timing.cpu))
                cpus = " + ".join(f"{c:.2f}" for c in timing.cpu)
                print(f"  round {attempt + 1}, workers={workers}: run() {timing.run:.3f} s, "
                      f"job {timing.job:.3f} s, CPU over the job {cpus} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return best


# -- the ceiling: two processes, no shuffle -------------------------------------------


def _half_job(parts: list[list[Event]], batch_size: int, start: Any, results: Any) -> None:
    """In a process of its own: W2 with one worker over ``parts``, started
    together with the other process; reports (wall, CPU) seconds."""
    gc.collect()
    start.wait()
    cpu = time.process_time()
    begin = time.perf_counter()
    pipeline, _ = w2_partitions_pipeline(parts, 1, batch_size)
    pipeline.run()
    results.put((time.perf_counter() - begin, time.process_time() - cpu))


def ceiling(events: list[Event], partitions: int, batch_size: int, repeat: int,
            together: int) -> list[tuple[float, float]]:
    """``together`` processes at once, each running W2 over its own share of
    the partitions (what a worker reads) with no shuffle at all: best
    (wall, CPU) of each process. Two of them bound what two workers can
    reach on this machine; one alone, reading the same share, shows what
    running side by side costs."""
    import multiprocessing  # noqa: PLC0415

    parts = deal(events, partitions)
    context = multiprocessing.get_context("spawn")
    best = [(float("inf"), float("inf"))] * together
    for _ in range(repeat):
        start = context.Barrier(together)
        results = context.Queue()
        processes = [context.Process(target=_half_job,
                                     args=(parts[i::2], batch_size, start, results))
                     for i in range(together)]
        for process in processes:
            process.start()
        got = sorted(results.get() for _ in processes)
        for process in processes:
            process.join()
        best = [min(b, g) for b, g in zip(best, got, strict=True)]
    return best


# -- the shuffle's cost per record -----------------------------------------------------


def _keyed_batches(events: list[Event], size: int) -> list[Batch]:
    """W2's events as the shuffle gets them: keyed by user, stamped with ts."""
    batches = []
    for start in range(0, len(events) - size + 1, size):
        values = events[start:start + size]
        batches.append(Batch(values, list(map(w2p_user, values)),
                             list(map(w2p_timestamp, values))))
    return batches


def _best_ns(fn: Callable[[Any], Any], items: list[Any], records: int, repeat: int) -> float:
    """Best ns per record of ``fn`` over every item, ``records`` records in all."""
    best = float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - begin)
    return best / records * 1e9


def shuffle_costs(events: list[Event], batch_size: int, repeat: int) -> None:
    """ns per record for routing (per record of the batch) and for encode and
    decode (per record that crosses), with ``workers=2`` seen from worker 0,
    over up to 200,000 events (each owner already known, as in a long run):
    with the C speedups (``streamlet.native``) where they were built, and in
    Python."""
    batches = _keyed_batches(events[:200_000], batch_size)
    n = sum(len(b.values) for b in batches)
    print(f"shuffle, workers=2, {len(batches)} batches of {batch_size} W2 events, one process:")
    for label, native in (("C speedups", speedups), ("pure Python", None)):
        if label == "C speedups" and native is None:
            print("  C speedups: not built here")
            continue
        with _speedups_as(native):
            shuffle = ShuffleOutput(None, {}, 0, 2,  # type: ignore[arg-type]
                                    DEFAULT_MAX_PARALLELISM, batch_size)
            others = [dict(shuffle._parts(batch))[1] for batch in batches]
            frames = [codec.encode(other) for other in others]
            crossing = sum(len(o.values) for o in others)
            route = _best_ns(shuffle._parts, batches, n, repeat)
            enc = _best_ns(codec.encode, others, crossing, repeat)
            dec = _best_ns(lambda frame: codec.decode(*frame), frames, crossing, repeat)
        size = sum(len(payload) for _, payload in frames) / crossing
        print(f"  {label}: routing (owners + cut by worker) {route:.0f} ns per record of the "
              f"batch; encode {enc:.0f} + decode {dec:.0f} = {enc + dec:.0f} ns per record "
              f"that crosses ({crossing / n:.0%} of them, {size:.1f} bytes each) "
              f"= {route + (enc + dec) * crossing / n:.0f} ns per input record")


@contextmanager
def _speedups_as(native: Any) -> Iterator[None]:
    """The shuffle, codec and key groups of this process with ``native`` (None:
    their Python code), as ``STREAMLET_PURE_PYTHON=1`` makes them in a worker."""
    modules = (shuffle_module, codec, keys_module)
    saved = [module.speedups for module in modules]
    for module in modules:
        module.speedups = native
    try:
        yield
    finally:
        for module, before in zip(modules, saved, strict=True):
            module.speedups = before


def profile(events: list[Event], partitions: int, batch_size: int, directory: str) -> None:
    """One run with two workers under cProfile (``STREAMLET_WORKER_PROFILE``)."""
    os.makedirs(directory, exist_ok=True)
    os.environ[PROFILE_ENV] = directory  # the spawned workers inherit it
    try:
        with _job_timing():
            timing, _ = run_once(deal(events, partitions), 2, batch_size)
    finally:
        del os.environ[PROFILE_ENV]
    print(f"profiled run: run() {timing.run:.3f} s, job {timing.job:.3f} s "
          "(cProfile slows it)")
    for index in range(2):
        path = os.path.join(directory, f"worker-{index}.prof")
        print(f"\n== worker {index}: {path}")
        pstats.Stats(path).sort_stats("tottime").print_stats(25)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=_positive, default=1_000_000)
    parser.add_argument("--repeat", type=_positive, default=3)
    parser.add_argument("--partitions", type=_positive, default=4)
    parser.add_argument("--batch-size", type=_positive, default=1024)
    parser.add_argument("--workers", default="1,2",
                        help="worker counts to compare, comma-separated (default 1,2)")
    parser.add_argument("--only-shuffle", action="store_true",
                        help="only the shuffle's per-record costs")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time two processes each running W2 over half the "
                             "partitions with no shuffle (and one such process alone)")
    parser.add_argument("--pure-python", action="store_true",
                        help="workers without the C speedups (STREAMLET_PURE_PYTHON=1), as "
                             "where no C compiler was at install")
    parser.add_argument("--profile", metavar="DIR",
                        help="instead of timing: one run with two workers, each profiling its "
                             "job with cProfile into DIR/worker-<i>.prof; prints the top entries")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    if args.pure_python:
        os.environ["STREAMLET_PURE_PYTHON"] = "1"  # the spawned workers inherit it
    native = speedups is not None and not args.pure_python
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"generating {args.events:,} W2 events (seed 42, not timed) ...", flush=True)
    events = displace_events(generate_events(args.events))
    if args.profile:
        profile(events, args.partitions, args.batch_size, args.profile)
        return 0
    shuffle_costs(events, args.batch_size, args.repeat)
    if args.only_shuffle:
        return 0
    print(f"\nW2 from {args.partitions} partitions, batch {args.batch_size}, best of "
          f"{args.repeat}; results checked against the plain loop as multisets; the workers' "
          f"shuffles {'in C (streamlet.native)' if native else 'in pure Python'}", flush=True)
    best = measure(events, args.partitions, args.batch_size, args.repeat, counts)
    if args.ceiling:
        print("\nthe ceiling: W2 with one worker over half the partitions, no shuffle, "
              "in separate processes", flush=True)
        for together in (1, 2):
            found = ceiling(events, args.partitions, args.batch_size, args.repeat, together)
            text = ", ".join(f"{wall:.3f} s wall / {cpu:.2f} s CPU" for wall, cpu in found)
            print(f"  {together} process{'es' if together > 1 else ''} at once: {text}")
            best[f"ceiling {together}"] = max(wall for wall, _ in found)
            best[f"ceiling cpu {together}"] = max(cpu for _, cpu in found)
    n = args.events
    print(f"\nplain loop (one process): {n / best['plain']:>10,.0f} ev/s")
    for w in counts:
        print(f"workers={w}: run() {n / best[f'run {w}']:>10,.0f} ev/s "
              f"({best[f'run {w}']:.3f} s), job {n / best[f'job {w}']:>10,.0f} ev/s "
              f"({best[f'job {w}']:.3f} s), busiest process {best[f'cpu {w}']:.2f} CPU s")
    if 1 in counts:
        for w in counts:
            if w != 1:
                print(f"workers={w} / workers=1: run() "
                      f"{best['run 1'] / best[f'run {w}']:.2f}x, job "
                      f"{best['job 1'] / best[f'job {w}']:.2f}x, by CPU (workers=1's CPU / "
                      f"the busiest worker's) {best['cpu 1'] / best[f'cpu {w}']:.2f}x")
    if args.ceiling and 1 in counts:
        print(f"ceiling (two halves at once, no shuffle) / workers=1: "
              f"{best['job 1'] / best['ceiling 2']:.2f}x wall, "
              f"{best['cpu 1'] / best['ceiling cpu 2']:.2f}x by CPU; one half alone: "
              f"{best['job 1'] / best['ceiling 1']:.2f}x wall")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
