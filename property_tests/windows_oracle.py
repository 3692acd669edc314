"""The reference semantics of windows, by brute force.

No timers, heaps or accumulators: a key's windows are a dict from
``(start, end)`` to the records in the window, in the order the window got
them, and every output is computed from that list when the window fires.
The pipeline is ``from_iterable -> assign_timestamps(bounded_out_of_orderness(
bound)) -> key_by -> window -> ...`` with ``batch_size=1``, so the steps are:

- a record arrives: it is added to each of its windows that is not late
  (``end - 1 + lateness <= watermark``); a window it is added to whose end has
  already passed (``end - 1 <= watermark``) fires again at once (a late
  firing); a record added to no window is late when ``ts + lateness <=
  watermark``, and goes to the late-data side output;
- then the watermark ``highest timestamp - bound - 1`` follows, if it went up:
  each window whose ``end - 1`` it passes fires, in time order, and each
  window whose ``end - 1 + lateness`` it reaches is dropped;
- the end of the input is the maximum watermark.

A record's windows: those of the grid ``offset + k * slide`` (``slide ==
size`` for tumbling) that contain it. A session record makes ``[ts, ts +
gap)``, which first merges with every window of its key that overlaps or
touches it; the merged window's records are the merged windows' records, in
window start order, and the record is added to it (if it is not late).
Count windows have no time: every ``slide``-th record of a key (or every
``n``-th, without a slide) emits the key's last ``n`` records.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from property_tests.windows_strategies import GLOBAL_END, GLOBAL_START, Assigner, Case, Fn, Rec

MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1

Window = tuple[int, int]  # (start, end), end exclusive


def freeze(value: Any) -> Any:
    """A hashable, comparable copy of an output value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def reduce_concat(a: tuple[str, str, int], b: tuple[str, str, int]) -> tuple[str, str, int]:
    """The reduce function of ``Fn("reduce")``: tags concatenated, timestamps summed."""
    return (a[0] + b[0], a[1], a[2] + b[2])


def window_values(fn: Fn, records: list[Rec]) -> list[Any]:
    """What one firing of a window holding ``records`` (in this order) emits, as values."""
    tags = [r.tag for r in records]
    if fn.kind == "sum":
        return [sum(r.ts for r in records)]
    if fn.kind == "count":
        return [len(records)]
    if fn.kind == "collect":
        return [tags]
    if fn.kind == "first":
        return [tags[0]]
    if fn.kind == "last":
        return [tags[-1]]
    if fn.kind == "max":
        return [max(r.ts for r in records)]
    if fn.kind == "mean":
        return [sum(r.ts for r in records) / len(records)]
    if fn.kind == "top2":
        return [sorted((r.ts for r in records), reverse=True)[:2]]
    if fn.kind == "concat":
        return ["".join(tags)]
    if fn.kind == "reduce":
        return [functools.reduce(reduce_concat, [r.value for r in records])]
    if fn.kind == "process":
        return [tags, len(records)] if len(records) > 1 else [tags]
    raise AssertionError(fn)


@dataclass(frozen=True)
class Emission:
    """One output: ``step`` is the record index and whether it came from the record
    itself (``"record"``) or from the watermark after it (``"watermark"``), or
    ``(-1, "end")`` for the end of input."""

    step: tuple[int, str]
    key: str
    start: int
    end: int
    value: Any
    timestamp: int

    @property
    def output(self) -> tuple[str, int, int, Any, int]:
        return (self.key, self.start, self.end, freeze(self.value), self.timestamp)


def windows_of(assigner: Assigner, ts: int) -> list[Window]:
    """Every window of the tumbling or sliding grid that contains ``ts``, by trying
    every start from ``ts - size`` to ``ts``."""
    slide = assigner.size if assigner.kind == "tumbling" else assigner.slide
    assert slide is not None
    return [(start, start + assigner.size)
            for start in range(ts - assigner.size, ts + 1)
            if (start - assigner.offset) % slide == 0 and start <= ts < start + assigner.size]


@dataclass
class WindowOracle:
    case: Case
    windows: dict[str, dict[Window, list[Rec]]] = field(default_factory=dict)
    watermark: int = MIN_WATERMARK
    emitted: list[Emission] = field(default_factory=list)
    late: list[Rec] = field(default_factory=list)
    seen: dict[str, list[Rec]] = field(default_factory=dict)  # count windows: every record
    happened: Counter[str] = field(default_factory=Counter)  # for hypothesis.event()

    # -- helpers ------------------------------------------------------------------------

    def is_late(self, window: Window) -> bool:
        return window[1] - 1 + self.case.lateness <= self.watermark

    def fire(self, step: tuple[int, str], key: str, window: Window) -> None:
        for value in window_values(self.case.fn, self.windows[key][window]):
            self.emitted.append(Emission(step, key, window[0], window[1], value, window[1] - 1))

    # -- records ------------------------------------------------------------------------

    def record(self, rec: Rec) -> None:
        step = (rec.index, "record")
        assigner = self.case.assigner
        if assigner.kind == "count":
            self.count_record(rec)
            return
        mine = self.windows.setdefault(rec.key, {})
        if assigner.kind == "session":
            candidates = [self.merge(rec)]
        else:
            candidates = windows_of(assigner, rec.ts)
        added = False
        for window in candidates:
            if self.is_late(window):
                continue
            added = True
            mine.setdefault(window, []).append(rec)
            if window[1] - 1 <= self.watermark:
                self.happened["late firing"] += 1
                self.fire(step, rec.key, window)
        if not added and rec.ts + self.case.lateness <= self.watermark:
            self.late.append(rec)
        if not candidates:
            self.happened["record in no window"] += 1

    def merge(self, rec: Rec) -> Window:
        """The session window of ``rec``, merged with the windows it overlaps or touches."""
        mine = self.windows[rec.key]
        new = (rec.ts, rec.ts + self.case.assigner.gap)
        touching = sorted(w for w in mine if w[0] <= new[1] and w[1] >= new[0])
        if not touching:
            return new
        merged = (min(w[0] for w in [new, *touching]), max(w[1] for w in [new, *touching]))
        if any(w[1] == new[0] or w[0] == new[1] for w in touching):
            self.happened["touching windows merged"] += 1
        if len(touching) > 1:
            self.happened["windows bridged"] += 1
        records: list[Rec] = []
        for window in touching:  # in start order
            records.extend(mine.pop(window))
        mine[merged] = records
        return merged

    def count_record(self, rec: Rec) -> None:
        assigner = self.case.assigner
        seen = self.seen.setdefault(rec.key, [])
        seen.append(rec)
        every = assigner.size if assigner.slide is None else assigner.slide
        if len(seen) % every == 0:
            last = seen[-assigner.size:]
            for value in window_values(self.case.fn, last):
                self.emitted.append(Emission((rec.index, "record"), rec.key, GLOBAL_START,
                                             GLOBAL_END, value, GLOBAL_END))

    # -- watermarks ---------------------------------------------------------------------

    def advance(self, watermark: int, step: tuple[int, str]) -> None:
        """The watermark goes up to ``watermark``: fire what it passes, drop what it ends."""
        assert watermark > self.watermark
        before, self.watermark = self.watermark, watermark
        due = sorted((window[1], key, window) for key, mine in self.windows.items()
                     for window in mine if before < window[1] - 1 <= watermark)
        for _, key, window in due:
            self.fire(step, key, window)
        for mine in self.windows.values():
            for window in [w for w in mine if self.is_late(w)]:
                del mine[window]

    def run(self) -> WindowOracle:
        highest: int | None = None
        for rec in self.case.records:
            self.record(rec)
            highest = rec.ts if highest is None else max(highest, rec.ts)
            if highest - self.case.bound - 1 > self.watermark:
                self.advance(highest - self.case.bound - 1, (rec.index, "watermark"))
        if self.case.assigner.event_time:
            self.advance(MAX_WATERMARK, (-1, "end"))
        return self


def static_windows(case: Case) -> Counter[tuple[str, int, int, Any, int]]:
    """When no watermark passes any window before the end: every window fires once,
    at the end, with all its records. Sessions by sorting each key's records and
    chaining those whose ``[ts, ts + gap)`` overlap or touch. For order-insensitive
    functions only (the merge order of sessions is not modelled here)."""
    assert case.fn.kind in ("sum", "count")
    groups: dict[tuple[str, Window], list[Rec]] = {}
    for key in {r.key for r in case.records}:
        mine = sorted((r for r in case.records if r.key == key), key=lambda r: r.ts)
        if case.assigner.kind == "session":
            sessions: list[tuple[Window, list[Rec]]] = []
            for rec in mine:
                if sessions and rec.ts <= sessions[-1][0][1]:
                    (start, end), members = sessions[-1]
                    sessions[-1] = ((start, max(end, rec.ts + case.assigner.gap)),
                                    [*members, rec])
                else:
                    sessions.append(((rec.ts, rec.ts + case.assigner.gap), [rec]))
            for window, members in sessions:
                groups[(key, window)] = members
        else:
            for rec in mine:
                for window in windows_of(case.assigner, rec.ts):
                    groups.setdefault((key, window), []).append(rec)
    return Counter((key, w[0], w[1], freeze(value), w[1] - 1)
                   for (key, w), members in groups.items()
                   for value in window_values(case.fn, members))
