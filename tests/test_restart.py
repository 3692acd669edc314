"""Restart strategies: a failed job starts again by itself, from its latest
checkpoint, as often as its strategy allows; then it fails with a note
saying so."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_checkpoints import committed

import streamlet as sl
from streamlet._pipeline import _resumes_from
from streamlet.core.restart import RestartTracker
from streamlet.testing import ManualClock

EVENTS = 20_000


def failing_once(fail_at: int, failures: list[int]) -> Any:
    """A map that fails at record ``fail_at`` the first time it sees it."""
    def check(n: int) -> int:
        if n == fail_at and not failures:
            failures.append(n)
            raise ConnectionError("the database went away")
        return n
    return check


def test_a_failed_job_restarts_from_its_checkpoint_and_writes_each_result_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[int] = []
    p = sl.Pipeline("restarting", batch_size=100,
                    checkpointing=sl.Checkpointing(interval=1, storage=f"sqlite:///{tmp_path}/c.db"),
                    restart_strategy=sl.RestartStrategy.fixed_delay(3))
    (p.from_iterable(list(range(EVENTS)), name="numbers")
     .map(failing_once(15_000, failures), name="lookup")
     .map(lambda n: [n % 10, n])
     .key_by(lambda pair: pair[0])
     .reduce(lambda a, b: [a[0], a[1] + b[1]], name="sums")
     .to_files(tmp_path / "out"))
    result = p.run()
    assert result.restarts == 1 and failures == [15_000]
    said = [r.getMessage() for r in caplog.records if "restart 1 in" in r.getMessage()]
    assert len(said) == 1, said
    assert re.search(r"from (checkpoint \d+, its latest|its latest checkpoint, if it has one)",
                     said[0]), said[0]
    finals: dict[int, int] = {}
    for key, total in committed(tmp_path / "out"):
        finals[key] = max(finals.get(key, 0), total)
    # every running sum once: the last per key is the sum of its numbers
    assert finals == {k: sum(range(k, EVENTS, 10)) for k in range(10)}
    assert len(committed(tmp_path / "out")) == EVENTS  # one running sum per record


def test_when_the_strategy_allows_no_more_the_failure_is_raised_with_a_note(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def always(n: int) -> int:
        calls.append(n)
        raise ConnectionError("the database went away")

    p = sl.Pipeline("hopeless", restart_strategy=sl.RestartStrategy.fixed_delay(2))
    p.from_iterable([1]).map(always, name="lookup").collect()
    with pytest.raises(sl.UserFunctionError, match="the database went away") as failure:
        p.run()
    assert len(calls) == 3  # the first attempt and two restarts
    # no checkpointing: the log does not promise a checkpoint to resume from
    assert sum("from the start: without checkpointing" in r.getMessage()
               for r in caplog.records) == 2
    assert any("failed after 2 restarts" in note and "fixed delay of 0 ms, 2 restarts" in note
               for note in failure.value.__notes__)


@pytest.mark.parametrize(("completed", "restored_from", "restore_id", "says"), [
    ([7, 9], None, None, "from checkpoint 9, its latest"),
    ([], 4, None, "from checkpoint 4 again (it completed none since)"),
    ([], 4, 4, "from its latest checkpoint, if it has one (this attempt completed none)"),
    ([], None, None, "from its latest checkpoint, if it has one (this attempt completed none)"),
])
def test_the_restart_log_says_where_the_next_attempt_starts(
        completed: list[int], restored_from: int | None, restore_id: int | None,
        says: str) -> None:
    # (an attempt that restored a chosen checkpoint and completed none is followed by
    # one that restores the newest in storage, which may be another)
    job = SimpleNamespace(restored_from=restored_from, coordinator=SimpleNamespace(
        completed=[SimpleNamespace(checkpoint_id=c) for c in completed]))
    options = SimpleNamespace(checkpointing=object(), restore_id=restore_id)
    assert _resumes_from(job, options) == says  # type: ignore[arg-type]


def test_a_mistake_in_the_pipeline_is_never_restarted() -> None:
    calls: list[int] = []

    async def lookup(n: int) -> int:
        return n

    def forgot_async(n: int) -> Any:
        calls.append(n)
        return lookup(n)  # a coroutine nobody awaits: a StreamletConfigError

    p = sl.Pipeline("mistaken", restart_strategy=sl.RestartStrategy.fixed_delay(5))
    p.from_iterable([1]).map(forgot_async).collect()
    with pytest.raises(sl.StreamletConfigError):
        p.run()
    assert calls == [1]


async def test_the_delay_runs_on_the_job_clock() -> None:
    clock = ManualClock()
    failures: list[int] = []
    seen: list[int] = []
    p = sl.Pipeline("patient", clock=clock, batch_size=1,
                    restart_strategy=sl.RestartStrategy.fixed_delay(1, delay=5_000))
    p.from_iterable([0, 1, 2]).map(failing_once(1, failures)).map(seen.append).collect()
    run = asyncio.ensure_future(p.run_async())
    for _ in range(10_000):
        if p.status()["state"] == "restarting":
            break
        await asyncio.sleep(0)
    assert p.status()["state"] == "restarting"
    assert p.status()["live"] is True and p.status()["ready"] is False
    clock.advance(4_999)
    for _ in range(100):
        await asyncio.sleep(0)
    assert not run.done() and seen == [0]
    clock.advance(1)
    result = await run
    assert result.restarts == 1 and seen == [0, 0, 1, 2]  # from the start: no checkpoints


def test_exponential_backoff_grows_to_its_maximum_and_resets_after_a_good_run() -> None:
    tracker = RestartTracker(sl.RestartStrategy.exponential_backoff(
        initial=100, maximum=1_000, multiplier=3, reset_after=60_000, attempts=5))
    assert [tracker.next_delay(ran_ms=10) for _ in range(6)] == [100, 300, 900, 1_000, 1_000,
                                                                 None]
    assert tracker.next_delay(ran_ms=60_000) == 100  # it ran a minute: forgiven
    assert tracker.restarts == 6


@pytest.mark.parametrize(("make", "message"), [
    (lambda: sl.RestartStrategy.fixed_delay(0), "positive number of restarts"),
    (lambda: sl.RestartStrategy.exponential_backoff(initial=10, maximum=5), "less than initial"),
    (lambda: sl.RestartStrategy.exponential_backoff(multiplier=0.5), "a number >= 1"),
    (lambda: sl.Pipeline("x", restart_strategy=3), "restart_strategy must be"),  # type: ignore[arg-type]
])
def test_a_strategy_that_makes_no_sense_is_refused(make: Any, message: str) -> None:
    with pytest.raises(sl.StreamletConfigError, match=message):
        make()
