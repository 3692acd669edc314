"""``assign_timestamps``: stamp records with event time and generate watermarks.

Each source split (``Batch.split``) gets its own watermark generator; the
operator's watermark is the minimum over the splits that are not idle, and
never goes backwards. A watermark goes out after every batch that moved it.
With idleness, a split that has had no records for that long (in processing
time, from the job's clock) stops holding the watermark back; when every
split is idle the operator says so downstream, and a multi-input operator
there stops waiting for it.

Watermarks arriving from upstream are superseded by this operator's own, as
in Flink, except the final one a bounded input sends at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from streamlet.errors import InvalidTimestampError
from streamlet.state.snapshots import OperatorState, dumps, loads
from streamlet.time.clock import TimerHandle
from streamlet.time.watermarks import WatermarkGenerator, WatermarkStrategy

from .batch import Batch
from .control import MAX_WATERMARK, MIN_WATERMARK
from .operator import DeadLetter, Operator, OperatorContext
from .stateless import run_guarded, without

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_INT = frozenset((int,))


def to_timestamp(value: Any) -> int:
    """Int milliseconds from an int or a datetime (naive means UTC)."""
    if type(value) is int:
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        ms: int = (value - _EPOCH) // _MS
        return ms
    raise TypeError(value)


class _Split:
    __slots__ = ("generator", "idle", "last_active", "watermark")

    def __init__(self, generator: WatermarkGenerator, now: int) -> None:
        self.generator = generator
        self.watermark = MIN_WATERMARK
        self.idle = False
        self.last_active = now


class AssignTimestampsOperator(Operator):
    takes_split_announcements = True

    def __init__(self, name: str, extractor: Callable[[Any], Any] | None,
                 strategy: WatermarkStrategy, on_error: str) -> None:
        self.name = name
        self.extractor = extractor
        self.strategy = strategy
        self.on_error = on_error
        self._splits: dict[Any, _Split] = {}
        self._dormant: dict[Any, tuple[int, bytes | None]] = {}  # restored, not read yet
        self._watermark = MIN_WATERMARK
        self._idle = False
        self._idle_check: TimerHandle | None = None
        self._ctx: OperatorContext | None = None

    def open(self, ctx: OperatorContext) -> None:
        self._ctx = ctx
        if self.strategy.idleness_ms is not None:
            self._schedule_idle_check(ctx.clock.now() + self.strategy.idleness_ms)

    # -- records ------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        if not batch.values:
            # a split the source has started to read: until its first record (or
            # until it is idle) it holds the watermark back, as in Flink, lest
            # its records come late
            if batch.split is not None:
                self._split(batch.split)
            return
        if self.extractor is None:  # with_watermarks: the records already have event time
            if batch.timestamps is None:
                raise InvalidTimestampError(
                    self.name, "with_watermarks() needs records that already have "
                    "timestamps (a Kafka source gives each record its own); give them event "
                    "time with assign_timestamps(extractor, strategy) instead")
            await self._emit(batch.values, batch.keys, batch.timestamps, batch.split,
                             batch.offsets)
            return
        dead: list[DeadLetter] | None = [] if self.on_error == "dead_letter" else None
        raw: list[Any] = []
        extend = raw.extend
        fn = self.extractor
        bad = run_guarded(self, batch, lambda it: extend(map(fn, it)),
                          lambda v: raw.append(fn(v)), dead)
        values = without(batch.values, bad)
        keys = without(batch.keys, bad)
        assert values is not None
        offsets = without(batch.offsets, bad)
        if _INT.issuperset(map(type, raw)):
            timestamps: list[int] = raw
        else:
            values, keys, timestamps = self._convert(batch, bad, values, keys, raw, dead)
            offsets = None  # (rare: not worth following them through the conversion)
        if dead:
            await self.emit_dead_letters(dead)
        if not values:
            return
        await self._emit(values, keys, timestamps, batch.split, offsets)

    async def _emit(self, values: list[Any], keys: list[Any] | None, timestamps: list[int],
                    split_id: Any, offsets: list[int] | None) -> None:
        split = self._split(split_id)
        punctuated = split.generator.on_batch(values, timestamps)
        await self.output.push(Batch(values, keys, timestamps, split_id, offsets))
        periodic = split.generator.on_periodic_emit()
        for wm in (punctuated, periodic):
            if wm is not None and wm > split.watermark:
                split.watermark = wm
        if split.idle:
            split.idle = False
        await self._advance()

    def _convert(self, batch: Batch, bad: list[int], values: list[Any], keys: list[Any] | None,
                 raw: list[Any], dead: list[DeadLetter] | None
                 ) -> tuple[list[Any], list[Any] | None, list[int]]:
        skip = set(bad)
        original = [i for i in range(len(batch.values)) if i not in skip]
        keep_values: list[Any] = []
        keep_keys: list[Any] | None = None if keys is None else []
        timestamps: list[int] = []
        for j, stamp in enumerate(raw):
            try:
                ts = to_timestamp(stamp)
            except TypeError:
                self.failed(batch, original[j], InvalidTimestampError(
                    self.name, f"the timestamp extractor returned {stamp!r} "
                    f"({type(stamp).__name__}); return int milliseconds since the epoch "
                    "or a datetime"), dead)
                continue
            timestamps.append(ts)
            keep_values.append(values[j])
            if keep_keys is not None and keys is not None:
                keep_keys.append(keys[j])
        return keep_values, keep_keys, timestamps

    def _split(self, split_id: Any) -> _Split:
        split = self._splits.get(split_id)
        now = self._ctx.clock.now() if self._ctx is not None else 0
        if split is None:
            restored = self._dormant.pop(split_id, None)
            split = self._splits[split_id] = self._made(restored, now)
        else:
            split.last_active = now
        return split

    # -- watermarks ---------------------------------------------------------------

    async def _advance(self) -> None:
        active = [s for s in self._splits.values() if not s.idle]
        if not active:
            if self._splits and not self._idle:
                self._idle = True
                await Operator.on_status(self, True)
            return
        if self._idle:
            self._idle = False
            await Operator.on_status(self, False)
        wm = min(s.watermark for s in active)
        if wm > self._watermark:
            self._watermark = wm
            await Operator.on_watermark(self, wm)

    def snapshot_state(self, checkpoint_id: int, max_parallelism: int) -> OperatorState:
        """Each split's watermark and generator (when it pickles; a fresh one is
        made on restore otherwise), so that event time does not go back; and
        the splits restored from another worker's part that this one has not
        read yet (after a rescale), kept for when it does."""
        splits = {}
        for split_id, split in self._splits.items():
            try:
                generator: bytes | None = dumps(split.generator)
            except Exception:  # a generator holding a lambda, a lock...
                generator = None
            splits[split_id] = (split.watermark, generator)
        return OperatorState(dumps((self._watermark, splits, self._dormant)), {})

    def restore_state(self, state: OperatorState, max_parallelism: int) -> None:
        watermark, splits, *dormant = loads(state.meta)
        self._watermark = watermark
        self._dormant = dict(dormant[0]) if dormant else {}
        now = self._ctx.clock.now() if self._ctx is not None else 0
        for split_id, restored in splits.items():
            self._splits[split_id] = self._made(restored, now)

    def rescale_meta(self, metas: list[bytes], subtask: int, parallelism: int) -> bytes:
        """After a change of workers the splits move (a Kafka partition is read
        by another worker), so every split restores *dormant*: a worker takes a
        split's watermark and generator when it first reads that split, and a
        split it never reads does not hold its event time back. The operator's
        own watermark resumes from the slowest old worker's."""
        parts = [loads(meta) for meta in metas if meta]
        if not parts:
            return b""
        dormant: dict[Any, tuple[int, bytes | None]] = {}
        for _, _, *older in parts:  # what no old worker had read yet...
            dormant.update(older[0] if older else {})
        for _, splits, *_ in parts:  # ...and, newer, what each had read
            dormant.update(splits)
        return dumps((min(part[0] for part in parts), {}, dormant))

    def _made(self, restored: tuple[int, bytes | None] | None, now: int) -> _Split:
        if restored is None:
            return _Split(self.strategy.create_generator(), now)
        watermark, generator = restored
        split = _Split(self.strategy.create_generator() if generator is None
                       else loads(generator), now)
        split.watermark = watermark
        return split

    async def on_watermark(self, timestamp: int) -> None:
        if timestamp == MAX_WATERMARK and self._watermark < MAX_WATERMARK:
            self._watermark = MAX_WATERMARK
            await Operator.on_watermark(self, MAX_WATERMARK)

    async def on_status(self, idle: bool) -> None:
        return None  # this operator judges idleness itself

    # -- idleness -----------------------------------------------------------------

    def _schedule_idle_check(self, when: int) -> None:
        assert self._ctx is not None
        if self._idle_check is not None:
            self._idle_check.cancel()
        self._idle_check = self._ctx.call_at(when, self._check_idle)

    async def _check_idle(self) -> None:
        assert self._ctx is not None and self.strategy.idleness_ms is not None
        self._idle_check = None
        now = self._ctx.clock.now()
        timeout = self.strategy.idleness_ms
        if not self._splits:
            if not self._idle:  # nothing at all yet: idle from the start
                self._idle = True
                await Operator.on_status(self, True)
            self._schedule_idle_check(now + timeout)
            return
        for split in self._splits.values():
            if not split.idle and now - split.last_active >= timeout:
                split.idle = True
        await self._advance()
        active = [s.last_active for s in self._splits.values() if not s.idle]
        self._schedule_idle_check(min(active) + timeout if active else now + timeout)

    async def close(self) -> None:
        if self._idle_check is not None:
            self._idle_check.cancel()
