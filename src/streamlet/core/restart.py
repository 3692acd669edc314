"""Restart strategies: what a failed job does next, as in Flink.

A job that fails (a broker gone for longer than a client waits, a bug that
a bad record triggers, a worker that dies) can start again from its latest
complete checkpoint, in the same process, after a delay; exactly-once state
and output make that safe. How often, and how long to wait, is the strategy:

- ``RestartStrategy.none()`` (the default): the first failure fails the job.
- ``fixed_delay(attempts, delay)``: up to ``attempts`` restarts, ``delay``
  apart; the next failure fails the job.
- ``exponential_backoff(initial, maximum, multiplier, reset_after,
  attempts)``: the delay grows by ``multiplier`` per failure up to
  ``maximum``; a job that then runs for ``reset_after`` without failing
  starts over from ``initial``. Unlimited attempts unless given.

A mistake in the pipeline itself (``StreamletConfigError``) never restarts:
no restart can fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis

Duration = timedelta | int


@dataclass(frozen=True)
class RestartStrategy:
    kind: str
    attempts: int | None  # restarts allowed in a row; None: unlimited
    initial_ms: int = 0
    maximum_ms: int = 0
    multiplier: float = 1.0
    reset_after_ms: int | None = None

    @staticmethod
    def none() -> RestartStrategy:
        return RestartStrategy("none", 0)

    @staticmethod
    def fixed_delay(attempts: int, delay: Duration = 0) -> RestartStrategy:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise StreamletConfigError(
                f"fixed_delay(attempts={attempts!r}): a positive number of restarts")
        ms = to_millis(delay, "fixed_delay(delay)")
        return RestartStrategy("fixed-delay", attempts, ms, ms)

    @staticmethod
    def exponential_backoff(initial: Duration = timedelta(seconds=1),
                            maximum: Duration = timedelta(minutes=5), multiplier: float = 2.0,
                            reset_after: Duration | None = timedelta(hours=1),
                            attempts: int | None = None) -> RestartStrategy:
        first = to_millis(initial, "exponential_backoff(initial)")
        most = to_millis(maximum, "exponential_backoff(maximum)")
        if most < first:
            raise StreamletConfigError(
                f"exponential_backoff: maximum ({most} ms) is less than initial ({first} ms)")
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) \
                or multiplier < 1:
            raise StreamletConfigError(
                f"exponential_backoff(multiplier={multiplier!r}): a number >= 1")
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)
                                     or attempts < 1):
            raise StreamletConfigError(
                f"exponential_backoff(attempts={attempts!r}): a positive number, or None "
                "for no limit")
        reset = None if reset_after is None else to_millis(reset_after,
                                                           "exponential_backoff(reset_after)")
        return RestartStrategy("exponential-backoff", attempts, first, most, float(multiplier),
                               reset)

    def __str__(self) -> str:
        if self.kind == "none":
            return "no restarts"
        limit = "unlimited" if self.attempts is None else f"{self.attempts}"
        if self.kind == "fixed-delay":
            return f"fixed delay of {self.initial_ms} ms, {limit} restarts"
        return (f"exponential backoff from {self.initial_ms} ms to {self.maximum_ms} ms "
                f"(x{self.multiplier:g}), {limit} restarts")


class RestartTracker:
    """One job's restarts under a strategy: asked at each failure for the delay
    before the next attempt, or None when the strategy allows no more."""

    def __init__(self, strategy: RestartStrategy) -> None:
        self.strategy = strategy
        self.restarts = 0  # in all
        self.in_a_row = 0  # since the backoff last reset
        self._delay_ms = strategy.initial_ms

    def next_delay(self, ran_ms: int) -> int | None:
        """The attempt that just failed ran for ``ran_ms``."""
        strategy = self.strategy
        reset = strategy.reset_after_ms
        if reset is not None and ran_ms >= reset:
            self.in_a_row = 0
            self._delay_ms = strategy.initial_ms
        if strategy.attempts is not None and self.in_a_row >= strategy.attempts:
            return None
        delay = self._delay_ms
        self._delay_ms = min(strategy.maximum_ms, int(delay * strategy.multiplier))
        self.in_a_row += 1
        self.restarts += 1
        return delay
