"""Random event-time scripts for ``test_event_time``, as plain frozen data.

A description holds absolute values (timestamps, watermarks, clock times),
so that the test and ``event_time_oracle`` read the same numbers and
hypothesis prints a failing example readably. The strategies draw raw
increments and displacements as lists, which shrink well, and only then add
them up into timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

KEYS = ("a", "b", "c", "d")

# -- the function under test -----------------------------------------------------------


@dataclass(frozen=True)
class TimerFn:
    """How the counting ``KeyedProcessFunction`` of the tests behaves.

    Per record: count it in the key's ValueState, then register (or, for a
    record with ``drop``, delete) the event-time timer at ``ts + delay``, and
    register the key's ``FINAL`` timer. With ``echo`` it emits
    ``("rec", key, index, count, current_watermark)``. ``on_timer`` emits
    ``("timer", key, timer_ts, count, current_watermark)``, then clears the
    count if ``clear``, then, if ``chain`` and ``timer_ts % 3 == 0``,
    registers a timer at ``timer_ts + chain`` (``chain`` is not a multiple
    of 3, so a chain has one link; a negative one registers a timer that is
    already due, which fires in the same round, in its time order). The ``FINAL`` timer emits
    ``("final", key, count)``: the key's state at the end.
    """

    delay: int
    clear: bool = False
    chain: int = 0
    echo: bool = True


FINAL = 2**62 + 1  # after every other timer; 2**62 + 1 is not a multiple of 3


@dataclass(frozen=True)
class Event:
    index: int
    key: str
    ts: int
    drop: bool = False  # delete the timer at ts + delay instead of registering it

    @property
    def record(self) -> tuple[int, str, int, bool]:
        """What flows through the pipeline."""
        return (self.index, self.key, self.ts, self.drop)


@dataclass(frozen=True)
class EventStream:
    """Records with timestamps at most ``disorder`` behind the highest before them."""

    events: tuple[Event, ...]
    disorder: int  # the bound the generator kept to
    bound: int  # the out-of-orderness the watermark strategy assumes (may be smaller)
    batch_size: int
    channel_capacity: int = 8
    scheduling_seed: int = 0


@dataclass(frozen=True)
class WatermarkOp:
    timestamp: int


Op = Event | WatermarkOp




def timer_fns(*, due_chains: bool = False) -> st.SearchStrategy[TimerFn]:
    """With ``due_chains`` ``on_timer`` always chains, and backwards: the timer it
    registers is already due."""
    chains = st.sampled_from([-1, -2]) if due_chains else st.sampled_from([0, 0, 1, 2, 4, 5, 7])
    return st.builds(TimerFn, delay=st.integers(0, 40), clear=st.booleans(), chain=chains,
                     echo=st.booleans())



def _lists(elements: st.SearchStrategy[Any], max_size: int) -> st.SearchStrategy[list[Any]]:
    """Lists of any length up to ``max_size``, long ones as often as short ones.

    (A plain ``st.lists`` of composite elements comes out empty or short most
    of the time; the first branch is where a failing example shrinks to.)
    """
    return st.one_of(st.lists(elements, max_size=max_size),
                     st.lists(elements, min_size=max_size // 4, max_size=max_size))


def _raw_events(disorder: int, max_step: int = 10
                ) -> st.SearchStrategy[tuple[int, int, str, bool]]:
    """One record: how far the base moves on, how far back the record is, its key,
    and whether it deletes its timer."""
    return st.tuples(st.integers(0, max_step), st.integers(0, disorder), st.sampled_from(KEYS),
                     st.integers(0, 4).map(lambda n: n == 0))


def _events(raw: list[tuple[int, int, str, bool]], base: int, n_keys: int,
            start_index: int = 0) -> tuple[list[Event], int]:
    """Timestamps increasing on average (the base), each displaced back from it."""
    events = []
    for i, (step, back, drawn, drop) in enumerate(raw):
        base += step
        key = KEYS[KEYS.index(drawn) % n_keys]
        events.append(Event(start_index + i, key, base - back, drop))
    return events, base


@st.composite
def event_streams(draw: st.DrawFn, max_events: int = 40) -> EventStream:
    disorder = draw(st.integers(0, 30))
    n_keys = draw(st.integers(1, len(KEYS)))
    base = draw(st.integers(-100, 1000))
    raw = draw(_lists(_raw_events(disorder, max_step=4), max_events))
    events, _ = _events(raw, base, n_keys)
    # usually the real disorder; sometimes less, so that records come late; sometimes more
    bound = draw(st.one_of(st.integers(0, disorder), st.just(disorder),
                           st.integers(disorder, disorder + 20)))
    return EventStream(tuple(events), disorder, bound,
                       batch_size=draw(st.one_of(st.integers(1, 4), st.integers(1, 20))),
                       channel_capacity=draw(st.integers(1, 4)),
                       scheduling_seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def watermark_scripts(draw: st.DrawFn, max_ops: int = 50, max_step: int = 10,
                      max_disorder: int = 30, min_keys: int = 1) -> tuple[Op, ...]:
    """Records interleaved with non-decreasing watermarks that trail the records
    by a random lag (so some records are late, and some watermarks repeat).
    Small ``max_step`` and ``max_disorder`` pack the timestamps, so that many
    timers share an instant."""
    disorder = draw(st.integers(0, max_disorder))
    n_keys = draw(st.integers(min_keys, len(KEYS)))
    base = draw(st.integers(-100, 1000))
    raw = draw(_lists(st.one_of(_raw_events(disorder, max_step), st.integers(-5, 40)),
                      max_ops))
    ops: list[Op] = []
    watermark: int | None = None
    index = 0
    for item in raw:
        if isinstance(item, int):  # a watermark ``item`` behind the base, never backwards
            watermark = base - item if watermark is None else max(watermark, base - item)
            ops.append(WatermarkOp(watermark))
        else:
            events, base = _events([item], base, n_keys, index)
            ops.extend(events)
            index += 1
    return tuple(ops)


# -- idleness ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    """Records (with these timestamps) into source ``source`` (0 or 1), then settle."""

    source: int
    stamps: tuple[int, ...]


@dataclass(frozen=True)
class Advance:
    """Move the pipeline's ManualClock on by ``ms``, then settle."""

    ms: int


@dataclass(frozen=True)
class IdleScript:
    idleness: int
    bounds: tuple[int, int]  # each source's out-of-orderness
    batch_size: int
    steps: tuple[Feed | Advance, ...]  # source 1 sends nothing after its last Feed here
    scheduling_seed: int = 0


@st.composite
def idle_scripts(draw: st.DrawFn, max_steps: int = 14) -> IdleScript:
    idleness = draw(st.integers(1, 50))
    bounds = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    # source 1 usually lags behind source 0, so that it holds the watermark back
    first = draw(st.integers(0, 200))
    bases = [first, first - draw(st.integers(-20, 200))]
    feed = st.tuples(st.integers(0, 1),
                     st.lists(st.tuples(st.integers(0, 10), st.integers(0, 5)),
                              min_size=1, max_size=6))
    advance = st.one_of(st.integers(0, 2 * idleness), st.just(idleness),
                        st.integers(0, 5 * idleness))
    raw = draw(_lists(st.one_of(feed, advance), max_steps))
    stop = draw(st.integers(0, len(raw)))  # source 1 stops sending at step ``stop``
    steps: list[Feed | Advance] = []
    for i, item in enumerate(raw):
        if isinstance(item, int):
            steps.append(Advance(item))
            continue
        source, records = item
        if i >= stop:
            source = 0
        stamps = []
        for step, back in records:
            bases[source] += step
            stamps.append(bases[source] - back % (bounds[source] + 1))
        steps.append(Feed(source, tuple(stamps)))
    return IdleScript(idleness, bounds, draw(st.integers(1, 4)), tuple(steps),
                      draw(st.integers(0, 2**32 - 1)))


# -- processing-time timers ------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    key: str
    time: int


@dataclass(frozen=True)
class Delete:
    key: str
    time: int


@dataclass(frozen=True)
class AdvanceClock:
    ms: int


ProcessingOp = Register | Delete | AdvanceClock


@st.composite
def processing_time_scripts(draw: st.DrawFn, max_ops: int = 40
                            ) -> tuple[int, tuple[ProcessingOp, ...]]:
    """A start time and registrations (mostly in the future, sometimes in the
    past), deletions (mostly of timers registered before) and clock advances."""
    start = draw(st.integers(0, 10_000))
    n_keys = draw(st.integers(1, len(KEYS)))
    raw = draw(_lists(st.tuples(st.sampled_from(["reg", "reg", "del", "adv"]),
                                st.sampled_from(KEYS[:n_keys]), st.integers(-10, 60),
                                st.booleans()),
                      max_ops))
    now = start
    registered: list[tuple[str, int]] = []
    ops: list[ProcessingOp] = []
    for kind, key, amount, pick in raw:
        if kind == "adv":
            ms = max(0, amount)
            now += ms
            ops.append(AdvanceClock(ms))
        elif kind == "reg":
            registered.append((key, now + amount))
            ops.append(Register(key, now + amount))
        elif pick and registered:
            ops.append(Delete(*registered[amount % len(registered)]))
        else:
            ops.append(Delete(key, now + amount))
    return start, tuple(ops)
