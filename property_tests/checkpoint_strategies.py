"""Random stateful pipelines and crash points for ``test_checkpoints``, as frozen data.

A :class:`Case` is a stream of records (``records``: a few keys, timestamps
rising on average with random disorder, a good share far behind), the shape of the
keyed part of the pipeline (:class:`Shape`), how the job is configured
(batch size, state backend, checkpoint storage, an async map in front of the
keyed part) and where it crashes. Everything is plain numbers and strings,
so hypothesis shrinks it and prints a failing example readably.

The shapes:

* ``reduce``: a running keyed reduce that concatenates tags (not commutative);
* ``window``: tumbling, sliding or session event-time windows folded by a
  concatenating ``AggregateFunction``, a concatenating reduce or a process
  window function, with allowed lateness and (usually) a late side output;
* ``process``: a ``KeyedProcessFunction`` with ``ValueState``, ``ListState``,
  ``MapState`` and event-time timers it registers and deletes;
* ``join``: an interval join of two keyed streams (each record goes to the
  left or the right input, ``Case.sides``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from property_tests.windows_strategies import KEYS, Assigner, Rec, session, sliding, tumbling

SHAPES = ("reduce", "window", "process", "join")
WINDOW_FNS = ("concat", "reduce", "process")


@dataclass(frozen=True)
class Shape:
    """The keyed part of the pipeline and its parameters.

    ``bound`` is the watermark strategy's out-of-orderness for every shape
    (the records' real disorder is often larger, so some come late);
    ``assigner``, ``window_fn``, ``lateness`` and ``late_output`` are for
    ``window``; ``timer_delay``, ``bucket`` and ``ptimer_delay`` (processing-time
    timers, or none) for ``process``; ``lower`` and ``upper`` (inclusive, relative
    to the left record) for ``join``.
    """

    kind: str
    bound: int = 0
    assigner: Assigner | None = None
    window_fn: str = "concat"
    lateness: int = 0
    late_output: bool = True
    timer_delay: int = 0
    bucket: int = 1
    ptimer_delay: int | None = None
    lower: int = 0
    upper: int = 0


@dataclass(frozen=True)
class Case:
    """One random job and where it is interrupted.

    ``crashes`` are strictly increasing record counts in ``0..len(records)``:
    Method A checkpoints after that many records and restarts; Method B fails
    on that record (the checkpoint it restarts from is wherever the clock put
    the last one; with ``finish_writes`` the writes under way complete first,
    otherwise the failure may come in the middle of one). ``async_map`` puts an
    ``@sl.operator(concurrency=4)`` async map, whose calls finish out of order,
    in front of the keyed part (on the left input of a join).
    """

    records: tuple[Rec, ...]
    sides: tuple[int, ...]  # join only: 0 = left input, 1 = right input, per record
    shape: Shape
    batch_size: int
    backend: str  # "memory" or "sqlite"
    cache_size: int  # entries per state in the SQLite cache: 1 or 2, for up to 3 keys
    storage: str  # checkpoint storage: "sqlite" or "file"
    async_map: bool
    crashes: tuple[int, ...]
    clock_step: int = 0  # Method A: processing time moves this far after each segment
    interval: int = 8  # Method B: a checkpoint every ``interval`` ms, 1 ms per record
    finish_writes: bool = True  # Method B: let checkpoint writes under way end before failing


@st.composite
def shapes(draw: st.DrawFn, kinds: tuple[str, ...] = SHAPES, disorder: int = 0,
           late: bool = True, processing_time: bool = True) -> Shape:
    """``late=False`` bounds the watermark by at least the records' real disorder:
    then no record is ever behind its input's watermark. ``processing_time=False``:
    no processing-time timers (Method B moves the clock while records flow, so
    they would fire at moments that depend on scheduling)."""
    kind = draw(st.sampled_from(kinds))
    # mostly less than the real disorder, so that records come late; sometimes all of it
    small = st.integers(0, max(0, disorder // 3))
    bound = draw(st.one_of(small, small, st.integers(0, disorder),
                           st.integers(disorder, disorder + 8)) if late
                 else st.integers(disorder, disorder + 8))
    if kind == "window":
        return Shape(kind, bound, assigner=draw(st.one_of(tumbling(), sliding(), session())),
                     window_fn=draw(st.sampled_from(WINDOW_FNS)),
                     lateness=draw(st.one_of(st.just(0), st.integers(1, 4),
                                             st.integers(1, 12))),
                     late_output=draw(st.integers(0, 3).map(lambda n: n > 0)))
    if kind == "process":
        return Shape(kind, bound, timer_delay=draw(st.integers(0, 12)),
                     bucket=draw(st.integers(1, 10)),
                     ptimer_delay=draw(st.one_of(st.none(), st.integers(0, 30)))
                     if processing_time else None)
    if kind == "join":
        lower = draw(st.integers(-10, 6))
        return Shape(kind, bound, lower=lower, upper=lower + draw(st.integers(0, 12)))
    return Shape(kind, bound)


@st.composite
def records(draw: st.DrawFn, max_records: int = 30, max_step: int = 4,
            max_disorder: int = 30) -> tuple[tuple[Rec, ...], int]:
    """Timestamps that rise on average (a base moving on by ``0..max_step``), each
    placed up to ``disorder`` behind the base, a good share of them far behind
    (so that they come late); keys from a small set."""
    disorder = draw(st.one_of(st.integers(0, max_disorder),
                              st.integers(max_disorder // 3, max_disorder)))
    n_keys = draw(st.integers(1, len(KEYS)))
    base = draw(st.integers(-40, 60))
    back = st.one_of(st.just(0), st.integers(0, disorder), st.integers(disorder // 2, disorder))
    size = st.one_of(st.integers(0, max_records), st.integers(max_records // 2, max_records))
    n = draw(size)
    raw = draw(st.lists(st.tuples(st.integers(0, max_step), back, st.integers(0, n_keys - 1)),
                        min_size=n, max_size=n))
    recs = []
    for index, (step, behind, key) in enumerate(raw):
        base += step
        recs.append(Rec(index, KEYS[key], base - behind))
    return tuple(recs), disorder


@st.composite
def crash_points(draw: st.DrawFn, n: int, max_crashes: int = 2) -> tuple[int, ...]:
    """One or two distinct points in ``0..n``, increasing; the ends are likely."""
    point = st.one_of(st.integers(0, n), st.sampled_from(sorted({0, n, n // 2})))
    points = draw(st.lists(point, min_size=1, max_size=max_crashes, unique=True))
    return tuple(sorted(points))


@st.composite
def failure_points(draw: st.DrawFn, n: int, max_crashes: int = 2) -> tuple[int, ...]:
    """Records to fail on (Method B): distinct, increasing, in ``0..n-1``, mostly in
    the second half, where checkpoints have had time to complete."""
    if n == 0:
        return ()
    point = st.one_of(st.integers(0, n - 1), st.integers(n // 2, n - 1))
    points = draw(st.lists(point, min_size=1, max_size=max_crashes, unique=True))
    return tuple(sorted(points))


@st.composite
def cases(draw: st.DrawFn, kinds: tuple[str, ...] = SHAPES, max_records: int = 30,
          max_crashes: int = 2, failures: bool = False, late: bool = True) -> Case:
    """``failures``: crash points for Method B (records to fail on), else for Method A
    (record counts to checkpoint after). ``late=False``: no record comes late."""
    recs, disorder = draw(records(max_records=max_records))
    shape = draw(shapes(kinds, disorder, late, processing_time=not failures))
    sides = tuple(draw(st.lists(st.integers(0, 1), min_size=len(recs), max_size=len(recs)))
                  ) if shape.kind == "join" else ()
    backend = draw(st.sampled_from(("memory", "sqlite")))
    return Case(
        records=recs, sides=sides, shape=shape,
        # small batches mostly: a watermark follows each, so records come late
        batch_size=draw(st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(1, 64))),
        backend=backend,
        cache_size=draw(st.integers(1, 2)) if backend == "sqlite" else 0,
        storage=draw(st.sampled_from(("sqlite", "file"))),
        async_map=draw(st.booleans()),
        crashes=draw((failure_points if failures else crash_points)(len(recs), max_crashes)),
        clock_step=draw(st.integers(0, 20)),
        interval=draw(st.integers(1, 6)),
        finish_writes=draw(st.integers(0, 3).map(lambda n: n > 0)))
