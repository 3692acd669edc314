"""Random window cases for ``test_windows``, as plain frozen data.

A case is a stream of records with timestamps (some out of order, some later
than the watermark strategy's bound allows), a window assigner, an allowed
lateness and the function that folds each window. Everything is an absolute
number, so that the test, ``windows_oracle`` and hypothesis' printout of a
failing example all read the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from hypothesis import strategies as st

KEYS = ("a", "b", "c")
T = TypeVar("T")

GLOBAL_START = -(2**63)  # GlobalWindow.start
GLOBAL_END = 2**63 - 1  # GlobalWindow.end, and its max_timestamp


@dataclass(frozen=True)
class Rec:
    """One record; ``tag`` (``"<index>."``) concatenates into a readable trace."""

    index: int
    key: str
    ts: int

    @property
    def tag(self) -> str:
        return f"{self.index}."

    @property
    def value(self) -> tuple[str, str, int]:
        """What flows through the pipeline: ``(tag, key, timestamp)``."""
        return (self.tag, self.key, self.ts)


@dataclass(frozen=True)
class Assigner:
    """``kind`` is tumbling, sliding, session or count; the other fields are its
    parameters (``slide`` None for a tumbling count window)."""

    kind: str
    size: int = 0
    slide: int | None = None
    offset: int = 0
    gap: int = 0

    @property
    def event_time(self) -> bool:
        return self.kind != "count"


@dataclass(frozen=True)
class Fn:
    """What folds a window: ``sum`` (of timestamps), ``count``, ``collect``
    (the tags, as a list), ``first`` and ``last`` (tags), ``max`` and ``mean``
    (of timestamps), ``top2`` (the two highest timestamps), ``concat`` (an
    AggregateFunction concatenating the tags: its merge is associative but not
    commutative), ``reduce`` (a reduce function concatenating tags and summing
    timestamps) or ``process`` (a window process function yielding the tags
    and, for more than one record, also how many). ``window_function`` wraps
    aggregate/reduce results in a window function that returns a plain tuple
    instead of a WindowResult."""

    kind: str
    window_function: bool = False


@dataclass(frozen=True)
class Case:
    records: tuple[Rec, ...]
    disorder: int  # the generator kept timestamps at most this far behind the highest
    bound: int  # the watermark strategy's out-of-orderness (may be smaller: late records)
    lateness: int
    assigner: Assigner
    fn: Fn
    late_output: bool = True  # side_output_late_data, or else only the dropped_late counter
    channel_capacity: int = 8

    @property
    def n_late_candidates(self) -> int:
        """How many records arrive behind a watermark already emitted (batch_size=1)."""
        late = 0
        highest: int | None = None
        for rec in self.records:
            if highest is not None and rec.ts <= highest - self.bound - 1:
                late += 1
            highest = rec.ts if highest is None else max(highest, rec.ts)
        return late


def _lists(elements: st.SearchStrategy[T], max_size: int) -> st.SearchStrategy[list[T]]:
    """Lists up to ``max_size`` long, three times in four at least half that (the
    short branch is where a failing example shrinks to)."""
    return st.integers(0, 3).flatmap(lambda long: st.lists(
        elements, min_size=max_size // 2 if long else 0, max_size=max_size))


@st.composite
def records(draw: st.DrawFn, max_records: int = 30, max_step: int = 4,
            max_disorder: int = 16, keys: tuple[str, ...] = KEYS
            ) -> tuple[tuple[Rec, ...], int]:
    """Timestamps that rise on average (a base moving on by ``0..max_step``), each
    placed up to ``disorder`` behind the base; keys from a small set (the first
    few of ``keys``)."""
    wide = st.integers(max_disorder // 3, max_disorder)
    disorder = draw(st.one_of(st.integers(0, max_disorder), wide, wide))
    n_keys = draw(st.integers(1, len(keys)))
    base = draw(st.integers(-40, 60))
    raw = draw(_lists(st.tuples(st.integers(0, max_step), st.integers(0, disorder),
                                st.integers(0, n_keys - 1)), max_records))
    recs = []
    for index, (step, back, key) in enumerate(raw):
        base += step
        recs.append(Rec(index, keys[key], base - back))
    return tuple(recs), disorder


def tumbling() -> st.SearchStrategy[Assigner]:
    return st.integers(1, 12).flatmap(lambda size: st.builds(
        Assigner, kind=st.just("tumbling"), size=st.just(size),
        offset=st.one_of(st.just(0), st.integers(1, 2 * size))))


@st.composite
def sliding(draw: st.DrawFn) -> Assigner:
    """Size not a multiple of the slide (so windows are not aligned to each other);
    sometimes smaller than the slide, which leaves gaps no window covers."""
    slide = draw(st.integers(2, 7))
    size = draw(st.one_of(
        st.integers(1, 3).map(lambda k: k * slide).flatmap(
            lambda whole: st.integers(1, slide - 1).map(lambda r: whole + r)),
        st.integers(1, slide - 1)))
    offset = draw(st.one_of(st.just(0), st.integers(1, 10)))
    return Assigner("sliding", size=size, slide=slide, offset=offset)


def session() -> st.SearchStrategy[Assigner]:
    return st.builds(Assigner, kind=st.just("session"), gap=st.integers(1, 8))


def count() -> st.SearchStrategy[Assigner]:
    return st.integers(1, 5).flatmap(lambda n: st.builds(
        Assigner, kind=st.just("count"), size=st.just(n),
        slide=st.one_of(st.none(), st.integers(1, n + 2))))


ALL_FNS = ("sum", "count", "collect", "concat", "reduce", "process", "first", "last", "max",
           "mean", "top2")


def fns(kinds: tuple[str, ...] = ALL_FNS) -> st.SearchStrategy[Fn]:
    return st.sampled_from(kinds).flatmap(lambda kind: st.builds(
        Fn, kind=st.just(kind),
        window_function=st.just(False) if kind == "process" else st.booleans()))


@st.composite
def cases(draw: st.DrawFn, assigners: st.SearchStrategy[Assigner],
          functions: st.SearchStrategy[Fn] | None = None, max_records: int = 30,
          min_lateness: int = 0, keys: tuple[str, ...] = KEYS) -> Case:
    recs, disorder = draw(records(max_records=max_records, keys=keys))
    # often less than the real disorder, so that records come late; sometimes all of
    # it, or more
    bound = draw(st.integers(0, 5).flatmap(lambda how: [
        st.integers(0, disorder // 3), st.integers(0, disorder // 3), st.integers(0, disorder),
        st.integers(0, disorder), st.just(disorder), st.integers(disorder, disorder + 10)][how]))
    lateness = draw(st.one_of(st.just(min_lateness), st.integers(max(1, min_lateness), 6),
                              st.integers(min_lateness, 20)))
    return Case(recs, disorder, bound, lateness, draw(assigners),
                draw(functions if functions is not None else fns()),
                late_output=draw(st.integers(0, 3).map(lambda n: n > 0)),
                channel_capacity=draw(st.integers(1, 4)))
