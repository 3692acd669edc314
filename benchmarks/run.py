"""Events per second of streamlet against the tightest plain-Python loop.

    python -m benchmarks.run [--events N] [--repeat R] [--only W1,W1k,W2p,W2,W3,...]
                             [--batch-size 1024[,256,...]]

For every workload it times, in the same process and interleaved, the plain
loop, the bare batched loop (the same user functions over slices, no engine)
and the streamlet pipeline, and keeps the best of ``R`` runs of each. The
events are generated once, before any timing (W2p's out-of-order copy and
W3's session events too). Each run's result is checked against the plain
loop's, and a mismatch raises: a benchmark that computes something else
measures nothing. Where the sides build different but equivalent values (a
window's ``WindowResult`` and the plain loop's tuple), both are put in one
form (``Workload.canonical``) after the timing and compared in that form.

ev/s is input events per second (1M events in, whatever the filter keeps;
W3 makes as many events of its own as were generated).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.workloads import WORKLOADS, Event, Runner, Workload, generate_events

SIDES = ("plain", "batched", "streamlet")


class ResultMismatchError(RuntimeError):
    """A run computed something other than the plain loop did."""


@dataclass(frozen=True)
class Row:
    workload: Workload
    batch_size: int
    best: dict[str, float]  # side -> best seconds

    def rate(self, side: str, events: int) -> float:
        return events / self.best[side]


def _summary(result: Any) -> str:
    if isinstance(result, dict):
        return f"dict of {len(result)} keys, sum of values {sum(v[1] for v in result.values())}"
    if isinstance(result, list):
        try:
            total = f"sum of last fields {sum(v[-1] for v in result)}"
        except TypeError:  # the last fields are not numbers
            total = "last fields not summable"
        return f"list of {len(result)} items, {total}"
    return repr(result)


def _first_difference(result: Any, expected: Any) -> str:
    if not (isinstance(result, list) and isinstance(expected, list)):
        return ""
    for i, (got, want) in enumerate(zip(result, expected, strict=False)):
        if got != want:
            return f"; first difference at item {i}: {got!r} instead of {want!r}"
    return "; the shorter list is a prefix of the longer"


def time_once(fn: Runner, events: list[Event], batch_size: int) -> tuple[float, Any]:
    gc.collect()  # start every run from the same heap, outside the timed region
    start = time.perf_counter()
    result = fn(events, batch_size)
    return time.perf_counter() - start, result


def measure(workload: Workload, events: list[Event], batch_size: int, repeat: int) -> Row:
    best = dict.fromkeys(SIDES, float("inf"))
    expected: Any = None
    for _ in range(repeat):
        for side in SIDES:  # interleaved, so drift in the machine hits every side alike
            seconds, result = time_once(getattr(workload, side), events, batch_size)
            result = workload.canonical(result)  # not timed
            if side == "plain":
                expected = result
            elif result != expected:
                raise ResultMismatchError(
                    f"{workload.name} ({side}, batch_size={batch_size}) computed "
                    f"{_summary(result)}; the plain loop computed {_summary(expected)}"
                    f"{_first_difference(result, expected)}")
            best[side] = min(best[side], seconds)
            result = None  # not kept alive while the next side runs: the collector would see it
    return Row(workload, batch_size, best)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    return names


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes are ints, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes are positive ints, not {text!r}")
    return sizes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=_positive, default=1_000_000,
                        help="events to generate (default 1000000)")
    parser.add_argument("--repeat", type=_positive, default=5,
                        help="runs of each side; the best is kept (default 5)")
    parser.add_argument("--only", type=_names, default=list(WORKLOADS),
                        help=f"comma-separated workloads (default {','.join(WORKLOADS)})")
    parser.add_argument("--batch-size", type=_sizes, default=[1024],
                        help="streamlet batch size(s), comma-separated; the bare batched "
                             "loop uses the same slices (default 1024)")
    return parser.parse_args(argv)


def _environment() -> str:
    try:
        import uvloop  # noqa: PLC0415  # only to report whether Pipeline.run uses it
    except ImportError:
        loop = "asyncio"
    else:
        loop = f"uvloop {uvloop.__version__}"
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {loop}")


def format_table(rows: list[Row], events: int) -> str:
    header = ("workload", "batch", "plain ev/s", "streamlet ev/s", "ratio", "target",
              "batched ev/s", "streamlet/batched")
    lines = []
    for row in rows:
        plain = row.rate("plain", events)
        engine = row.rate("streamlet", events)
        batched = row.rate("batched", events)
        ratio = engine / plain
        target = row.workload.target
        verdict = "" if target is None else "ok" if ratio >= target else "MISS"
        goal = "-" if target is None else f">={target:.2f}x {verdict}"
        lines.append((row.workload.name, str(row.batch_size), f"{plain:,.0f}", f"{engine:,.0f}",
                      f"{ratio:.3f}x", goal, f"{batched:,.0f}", f"{engine / batched:.3f}x"))
    widths = [max(len(cells[i]) for cells in (header, *lines)) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:],
                                                                strict=True))])
    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *(fmt(cells) for cells in lines)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(_environment())
    print(f"generating {args.events:,} events (seed 42, not timed) ...", flush=True)
    generated = generate_events(args.events)
    derived: dict[Callable[[list[Event]], list[Event]], list[Event]] = {}
    for name in args.only:  # every workload's events, made before any timing
        make = WORKLOADS[name].events
        if make not in derived:
            derived[make] = make(generated)
    print(f"best of {args.repeat} runs per side; ev/s = input events per second\n")
    rows = []
    for name in args.only:
        workload = WORKLOADS[name]
        events = derived[workload.events]
        for size in args.batch_size:
            print(f"  {name} (batch {size}): {workload.description}", flush=True)
            rows.append(measure(workload, events, size, args.repeat))
    print()
    print(format_table(rows, args.events))
    print("\nratio = streamlet / plain loop; streamlet/batched = the engine's share of the "
          "ideal\nbatched loop (same functions over slices, no engine). Results verified "
          "equal.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
