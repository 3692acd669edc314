"""The reference semantics of event time, keyed state and timers, brute force.

No heaps, no batches in flight, no event loop: a timer is an entry in a dict
``(key, time) -> registration number``, and firing means scanning for the
smallest ``(time, registration number)`` that is due, again and again. What
the engine does with channels, mailboxes and tasks, these functions do one
step after another, in the order the documented semantics fix:

- a source cuts its input into batches of ``batch_size`` records; after each
  batch ``assign_timestamps`` emits the watermark
  ``highest timestamp seen - out_of_orderness - 1`` if it went up;
- a watermark fires every event-time timer at or before it, in (time,
  registration) order, before anything else happens; a timer registered
  while firing fires in the same round if it is due;
- the end of a bounded input is the maximum watermark;
- a timer is one per (key, time): registering it again while it is pending
  changes nothing, deleting it forgets it, and registering it after that is
  a new registration;
- processing-time timers fire when the clock is advanced to or past them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from property_tests.event_time_strategies import (
    FINAL,
    Advance,
    AdvanceClock,
    Delete,
    Event,
    EventStream,
    Feed,
    IdleScript,
    Op,
    ProcessingOp,
    Register,
    TimerFn,
    WatermarkOp,
)

MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1


class Timers:
    """One time domain's timers, as a dict scanned by brute force."""

    def __init__(self) -> None:
        self.pending: dict[tuple[Any, int], int] = {}
        self._seq = itertools.count()

    def register(self, key: Any, time: int) -> None:
        if (key, time) not in self.pending:
            self.pending[(key, time)] = next(self._seq)

    def delete(self, key: Any, time: int) -> None:
        self.pending.pop((key, time), None)

    def in_order(self) -> list[tuple[Any, int]]:
        """The pending timers as (key, time), in the order they would fire."""
        return sorted(self.pending, key=lambda pair: (pair[1], self.pending[pair]))

    def pop_due(self, until: int) -> tuple[Any, int] | None:
        """The due timer with the smallest (time, registration), removed."""
        due = [(time, seq, key) for (key, time), seq in self.pending.items() if time <= until]
        if not due:
            return None
        time, _, key = min(due, key=lambda d: (d[0], d[1]))
        del self.pending[(key, time)]
        return key, time


@dataclass
class CounterModel:
    """The counting function of ``TimerFn``, its keyed state and its event-time timers."""

    fn: TimerFn
    count: dict[Any, int] = field(default_factory=dict)  # a cleared key has no entry
    timers: Timers = field(default_factory=Timers)
    watermark: int = MIN_WATERMARK
    out: list[tuple[Any, int]] = field(default_factory=list)  # (value, timestamp)
    forwarded: list[int] = field(default_factory=list)  # the watermarks passed on

    def record(self, event: Event) -> None:
        n = self.count.get(event.key, 0) + 1
        self.count[event.key] = n
        if event.drop:
            self.timers.delete(event.key, event.ts + self.fn.delay)
        else:
            self.timers.register(event.key, event.ts + self.fn.delay)
        self.timers.register(event.key, FINAL)
        if self.fn.echo:
            self.out.append((("rec", event.key, event.index, n, self.watermark), event.ts))

    def advance(self, watermark: int) -> None:
        """A watermark arrives: fire what is due, then pass it on (if it moved)."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        while (due := self.timers.pop_due(watermark)) is not None:
            self._fire(*due)
        self.forwarded.append(watermark)

    def _fire(self, key: Any, time: int) -> None:
        n = self.count.get(key, 0)
        if time == FINAL:
            self.out.append((("final", key, n), time))
            return
        self.out.append((("timer", key, time, n, self.watermark), time))
        if self.fn.clear:
            self.count.pop(key, None)
        if self.fn.chain and time % 3 == 0:
            self.timers.register(key, time + self.fn.chain)


def batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_pipeline(stream: EventStream, fn: TimerFn) -> CounterModel:
    """``from_iterable -> assign_timestamps(bounded_out_of_orderness(bound)) -> key_by
    -> process``, to the end of the input."""
    model = CounterModel(fn)
    highest: int | None = None
    emitted = MIN_WATERMARK
    for batch in batches(list(stream.events), stream.batch_size):
        for event in batch:
            model.record(event)
        top = max(e.ts for e in batch)
        highest = top if highest is None else max(highest, top)
        watermark = highest - stream.bound - 1
        if watermark > emitted:
            emitted = watermark
            model.advance(watermark)
    model.advance(MAX_WATERMARK)
    return model


def run_script(ops: Iterable[Op], fn: TimerFn) -> CounterModel:
    """Records and watermarks pushed one by one, as a ``FunctionHarness`` does
    (without the end of input)."""
    model = CounterModel(fn)
    for op in ops:
        if isinstance(op, WatermarkOp):
            model.advance(op.timestamp)
        else:
            model.record(op)
    return model


# -- idleness ----------------------------------------------------------------------------


@dataclass
class _Input:
    """One ``assign_timestamps`` with one split, as the union downstream sees it."""

    bound: int
    highest: int | None = None
    watermark: int = MIN_WATERMARK  # the highest it has emitted
    idle: bool = False
    last_active: int = 0  # the job starts at clock 0: an input with no records idles from there


@dataclass
class Observation:
    """What one record may see as ``current_watermark()`` downstream of the union."""

    source: int
    index: int
    at_least: int  # the lowest the combined watermark can be before the record's batch
    at_most: int  # the highest it can be after its batch (and the batch's watermark)
    own_active: bool  # the record's own input was not idle before its batch
    other_idle: bool  # the other input was idle before the batch
    own: int  # the watermark of the record's own input before its batch


class IdleOracle:
    """Two sources with ``with_idleness(I)``, unioned, with the test settling after
    every step: an input is idle once ``now - last_active >= I``, until it sends
    records again; the union's watermark never goes backwards and follows the
    minimum over the inputs that are not idle.

    When both inputs go idle in one clock advance, the union may see them go
    one after the other, in either order, and so briefly take the watermark of
    the one still active: the combined watermark is known as a range
    ``[low, high]``, not exactly.
    """

    def __init__(self, script: IdleScript) -> None:
        self.script = script
        self.inputs = [_Input(b) for b in script.bounds]
        self.now = 0
        self.low = self.high = MIN_WATERMARK
        self.sent = [0, 0]  # records per source so far

    def _combine(self) -> None:
        active = [i.watermark for i in self.inputs if not i.idle]
        if active:
            self.low = max(self.low, min(active))
            self.high = max(self.high, min(active))

    def step(self, step: Feed | Advance) -> list[Observation]:
        """The observations of the records this step sends."""
        if isinstance(step, Advance):
            self.now += step.ms
            going = [i for i in self.inputs
                     if not i.idle and self.now - i.last_active >= self.script.idleness]
            for first in range(1, len(going)):  # some go idle before the others
                for early in itertools.combinations(going, first):
                    active = [i.watermark for i in self.inputs
                              if not i.idle and all(i is not e for e in early)]
                    self.high = max(self.high, min(active))
            for inp in going:
                inp.idle = True
            self._combine()
            return []
        inp = self.inputs[step.source]
        other = self.inputs[1 - step.source]
        seen = []
        for stamps in batches(list(step.stamps), self.script.batch_size):
            before = self.low
            own, own_active, other_idle = inp.watermark, not inp.idle, other.idle
            top = max(stamps)
            inp.highest = top if inp.highest is None else max(inp.highest, top)
            inp.watermark = max(inp.watermark, inp.highest - inp.bound - 1)
            inp.idle = False
            inp.last_active = self.now
            self._combine()
            for _ in stamps:
                seen.append(Observation(step.source, self.sent[step.source], before,
                                        self.high, own_active, other_idle, own))
                self.sent[step.source] += 1
        return seen


# -- processing-time timers --------------------------------------------------------------


def processing_time(start: int, ops: Iterable[ProcessingOp]
                    ) -> list[tuple[list[tuple[str, int]], int, list[tuple[str, int]]]]:
    """After each op: the timers that fired at it, in order, as (key, time), the
    clock, and the timers still pending, in the order they would fire."""
    timers = Timers()
    now = start
    after: list[tuple[list[tuple[str, int]], int, list[tuple[str, int]]]] = []
    for op in ops:
        fired: list[tuple[str, int]] = []
        if isinstance(op, Register):
            timers.register(op.key, op.time)
        elif isinstance(op, Delete):
            timers.delete(op.key, op.time)
        elif isinstance(op, AdvanceClock):
            now += op.ms
            while (due := timers.pop_due(now)) is not None:
                fired.append(due)
        else:
            raise AssertionError(op)
        after.append((fired, now, timers.in_order()))
    return after
