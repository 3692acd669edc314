"""``async def`` user functions and the ``@sl.operator`` options.

Completion order and overlap are controlled with events: a call waits on a
gate the test opens, so which call finishes first is decided by the test,
never by timing. ``asyncio.sleep(0)`` only yields a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import pytest

import streamlet as sl

SAFETY = 5  # seconds; a bound on a hung run, never a wait for something to happen


async def run_with(pipeline: sl.Pipeline, *controllers: Awaitable[Any]) -> None:
    """Run the pipeline alongside controller coroutines, bounded by SAFETY."""
    try:
        await asyncio.wait_for(asyncio.gather(pipeline.run_async(), *controllers), SAFETY)
    except TimeoutError as exc:
        if isinstance(exc, sl.StreamletError):
            raise
        pytest.fail(f"the run hung: not finished after {SAFETY}s", pytrace=False)


async def yield_turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# -- async functions in every record-at-a-time operator ----------------------------


async def test_async_map() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    p = sl.Pipeline()
    out = p.from_iterable(range(10)).map(double).collect()
    await p.run_async()
    assert out == [x * 2 for x in range(10)]


async def test_async_filter() -> None:
    async def is_even(x: int) -> bool:
        await asyncio.sleep(0)
        return x % 2 == 0

    p = sl.Pipeline()
    out = p.from_iterable(range(10)).filter(is_even).collect()
    await p.run_async()
    assert out == [0, 2, 4, 6, 8]


async def test_async_filter_keeps_the_record_not_the_result() -> None:
    async def truthy(x: int) -> str:
        await asyncio.sleep(0)
        return "yes" if x > 2 else ""

    p = sl.Pipeline()
    out = p.from_iterable(range(5)).filter(truthy).collect()
    await p.run_async()
    assert out == [3, 4]


async def test_async_flat_map_returning_a_list() -> None:
    async def repeat(x: int) -> list[int]:
        await asyncio.sleep(0)
        return [x] * x

    p = sl.Pipeline()
    out = p.from_iterable([0, 1, 2, 3]).flat_map(repeat).collect()
    await p.run_async()
    assert out == [1, 2, 2, 3, 3, 3]


async def test_async_generator_in_flat_map() -> None:
    async def explode(word: str) -> AsyncIterator[str]:
        for ch in word:
            await asyncio.sleep(0)
            yield ch

    p = sl.Pipeline()
    out = p.from_iterable(["ab", "", "cde"]).flat_map(explode).collect()
    await p.run_async()
    assert out == ["a", "b", "c", "d", "e"]


async def test_async_generator_in_flat_map_with_concurrency_keeps_input_order() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    started = 0
    all_started = asyncio.Event()

    @sl.operator(concurrency=3, ordered=True)
    async def explode(i: int) -> AsyncIterator[str]:
        nonlocal started
        yield f"{i}a"
        started += 1
        if started == 3:
            all_started.set()
        await gates[i].wait()
        yield f"{i}b"

    async def release_backwards() -> None:
        await all_started.wait()
        for gate in reversed(gates):
            gate.set()
            await asyncio.sleep(0)

    p = sl.Pipeline()
    out = p.from_iterable(range(3)).flat_map(explode).collect()
    await run_with(p, release_backwards())
    assert out == ["0a", "0b", "1a", "1b", "2a", "2b"]


async def test_async_sink() -> None:
    seen: list[int] = []

    async def write(x: int) -> None:
        await asyncio.sleep(0)
        seen.append(x)

    p = sl.Pipeline()
    p.from_iterable(range(7)).sink(write)
    await p.run_async()
    assert seen == list(range(7))


async def test_async_callable_object_is_run_as_async() -> None:
    class Lookup:
        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, x: int) -> str:
            self.calls += 1
            await asyncio.sleep(0)
            return f"v{x}"

    lookup = Lookup()
    p = sl.Pipeline()
    out = p.from_iterable(range(3)).map(lookup).collect()
    await p.run_async()
    assert out == ["v0", "v1", "v2"]
    assert lookup.calls == 3


async def test_async_key_by_then_reduce() -> None:
    async def by_user(event: tuple[str, int]) -> str:
        await asyncio.sleep(0)
        return event[0]

    def add(acc: tuple[str, int], event: tuple[str, int]) -> tuple[str, int]:
        return (acc[0], acc[1] + event[1])

    events = [("a", 1), ("b", 10), ("a", 2), ("c", 100), ("b", 20), ("a", 3)]
    p = sl.Pipeline()
    out = p.from_iterable(events).key_by(by_user).reduce(add).collect()
    await p.run_async()
    per_key: dict[str, list[int]] = {}
    for user, total in out:
        per_key.setdefault(user, []).append(total)
    assert per_key == {"a": [1, 3, 6], "b": [10, 30], "c": [100]}


async def test_async_key_by_with_concurrency_unordered_routes_by_the_computed_key() -> None:
    @sl.operator(concurrency=4, ordered=False)
    async def parity(x: int) -> str:
        await asyncio.sleep(0)
        return "even" if x % 2 == 0 else "odd"

    p = sl.Pipeline()
    out = (p.from_iterable(range(1, 21)).key_by(parity)
           .reduce(lambda a, b: a + b).collect())
    await p.run_async()
    # a running sum per key: the final sums are fixed whatever the order
    assert len(out) == 20
    assert sum(range(2, 21, 2)) in out
    assert sum(range(1, 21, 2)) in out
    assert max(out) == sum(range(2, 21, 2))


async def test_async_reduce() -> None:
    calls: list[tuple[int, int]] = []

    async def add(acc: int, x: int) -> int:
        calls.append((acc, x))
        await asyncio.sleep(0)
        return acc + x

    p = sl.Pipeline()
    out = p.from_iterable([1, 2, 3, 4, 5]).key_by(lambda x: x % 2).reduce(add).collect()
    await p.run_async()
    assert sorted(out) == sorted([1, 2, 4, 6, 9])
    odd = [v for v in out if v in (1, 4, 9)]
    assert odd == [1, 4, 9]
    # the first record of a key is its accumulator: no call for it
    assert sorted(calls) == [(1, 3), (2, 4), (4, 5)]


# -- concurrency ----------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("concurrency", [1, 2, 5, 16])
async def test_in_flight_calls_reach_but_never_exceed_concurrency(
        concurrency: int, ordered: bool) -> None:
    n = 60
    active = 0
    peak = 0
    started = 0
    full = asyncio.Event()
    release = asyncio.Event()
    started_while_full = -1

    @sl.operator(concurrency=concurrency, ordered=ordered)
    async def call(x: int) -> int:
        nonlocal active, peak, started
        started += 1
        active += 1
        peak = max(peak, active)
        if active == concurrency:
            full.set()
        try:
            await release.wait()
            await yield_turns(3)  # overlap with later calls once released
        finally:
            active -= 1
        return x

    async def controller() -> None:
        nonlocal started_while_full
        await full.wait()
        await yield_turns()  # give the operator every chance to start one more call
        started_while_full = started
        release.set()

    p = sl.Pipeline(batch_size=7)
    out = p.from_iterable(range(n)).map(call).collect()
    await run_with(p, controller())
    assert started_while_full == concurrency  # all slots taken, nothing more started
    assert peak == concurrency
    assert started == n
    if ordered:
        assert out == list(range(n))
    else:
        assert sorted(out) == list(range(n))


async def test_default_concurrency_is_one_call_at_a_time() -> None:
    active = 0
    peak = 0
    order: list[str] = []

    async def call(x: int) -> int:  # no @operator: the defaults
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        order.append(f"start {x}")
        await yield_turns(5)
        order.append(f"end {x}")
        active -= 1
        return x

    p = sl.Pipeline(batch_size=4)
    out = p.from_iterable(range(10)).map(call).collect()
    await p.run_async()
    assert peak == 1
    assert out == list(range(10))
    assert order == [s for x in range(10) for s in (f"start {x}", f"end {x}")]


async def test_ordered_emits_in_input_order_when_later_calls_finish_first() -> None:
    n = 4
    gates = [asyncio.Event() for _ in range(n)]
    finished = [asyncio.Event() for _ in range(n)]
    all_started = asyncio.Event()
    started = 0
    completion: list[int] = []
    emitted: list[int] = []
    emitted_before_first_finished: list[int] = []

    @sl.operator(concurrency=n, ordered=True)
    async def call(x: int) -> int:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        await gates[x].wait()
        completion.append(x)
        finished[x].set()
        return x * 10

    async def finish_last_first() -> None:
        await all_started.wait()
        for i in reversed(range(1, n)):
            gates[i].set()
            await finished[i].wait()
        await yield_turns()  # the finished results must still be held back
        emitted_before_first_finished.extend(emitted)
        gates[0].set()

    p = sl.Pipeline()
    p.from_iterable(range(n)).map(call).sink(emitted.append)
    await run_with(p, finish_last_first())
    assert completion == [3, 2, 1, 0]
    assert emitted_before_first_finished == []
    assert emitted == [0, 10, 20, 30]


async def test_ordered_holds_order_across_many_records_and_batches() -> None:
    n = 30
    gates = {i: asyncio.Event() for i in range(n)}
    waiting: list[int] = []
    changed = asyncio.Event()

    @sl.operator(concurrency=4, ordered=True)
    async def call(x: int) -> int:
        waiting.append(x)
        changed.set()
        await gates[x].wait()
        return x

    async def always_release_the_newest() -> None:
        released = 0
        while released < n:
            await changed.wait()
            changed.clear()
            while waiting:
                gates[waiting.pop()].set()  # newest first: reverse of input order
                released += 1

    p = sl.Pipeline(batch_size=3)
    out = p.from_iterable(range(n)).map(call).collect()
    await run_with(p, always_release_the_newest())
    assert out == list(range(n))


async def test_unordered_emits_in_completion_order() -> None:
    n = 4
    gates = [asyncio.Event() for _ in range(n)]
    arrived = [asyncio.Event() for _ in range(n)]
    all_started = asyncio.Event()
    started = 0
    emitted: list[int] = []

    @sl.operator(concurrency=n, ordered=False)
    async def call(x: int) -> int:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        await gates[x].wait()
        return x

    def sink(x: int) -> None:
        emitted.append(x)
        arrived[x].set()

    async def finish_in_order(order: list[int]) -> None:
        await all_started.wait()
        for i in order:
            gates[i].set()
            # the result reaches the sink while earlier records are still running
            await arrived[i].wait()

    p = sl.Pipeline()
    p.from_iterable(range(n)).map(call).sink(sink)
    await run_with(p, finish_in_order([2, 0, 3, 1]))
    assert emitted == [2, 0, 3, 1]


async def test_unordered_filter_and_sink_see_every_record_once() -> None:
    sunk: list[int] = []

    @sl.operator(concurrency=5, ordered=False)
    async def keep(x: int) -> bool:
        await yield_turns(x % 4)
        return x % 3 != 0

    @sl.operator(concurrency=3, ordered=False)
    async def write(x: int) -> None:
        await yield_turns(x % 2)
        sunk.append(x)

    p = sl.Pipeline(batch_size=8)
    p.from_iterable(range(100)).filter(keep).sink(write)
    await p.run_async()
    assert sorted(sunk) == [x for x in range(100) if x % 3 != 0]


# -- timeouts -------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_timeout_raises_operator_timeout_error_naming_the_operator(
        concurrency: int) -> None:
    never = asyncio.Event()
    cancelled: list[int] = []

    @sl.operator(concurrency=concurrency, timeout=timedelta(milliseconds=50))
    async def lookup(x: int) -> int:
        if x == 2:
            try:
                await never.wait()
            finally:
                cancelled.append(x)
        return x

    p = sl.Pipeline()
    p.from_iterable(range(4)).map(lookup, name="user-lookup").collect()
    with pytest.raises(sl.OperatorTimeoutError) as info:
        await asyncio.wait_for(p.run_async(), SAFETY)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, sl.UserFunctionError)
    assert isinstance(err, sl.StreamletError)
    assert str(err) == (
        "operator 'user-lookup': async call timed out after 50 ms on record 2. "
        "Raise the operator's timeout=, or pass on_error='dead_letter' to route "
        "such records aside.")
    assert err.operator == "user-lookup"
    assert err.record == 2
    assert err.timeout_ms == 50
    assert cancelled == [2]  # the timed-out call was cancelled, not left running


async def test_timeout_in_int_milliseconds_on_async_sink() -> None:
    never = asyncio.Event()

    @sl.operator(timeout=20)
    async def store(x: int) -> None:
        await never.wait()

    p = sl.Pipeline()
    p.from_iterable(["only"]).sink(store)
    with pytest.raises(sl.OperatorTimeoutError, match=r"^operator 'store': async call "
                       r"timed out after 20 ms on record 'only'\."):
        await asyncio.wait_for(p.run_async(), SAFETY)


@pytest.mark.parametrize("operator_timeout", [None, timedelta(seconds=30)])
@pytest.mark.parametrize("concurrency", [1, 3])
async def test_user_timeout_error_is_a_user_function_error_not_an_operator_timeout(
        operator_timeout: timedelta | None, concurrency: int) -> None:
    raised: list[TimeoutError] = []

    @sl.operator(concurrency=concurrency, timeout=operator_timeout)
    async def remote(x: int) -> int:
        await asyncio.sleep(0)
        if x == 1:
            exc = TimeoutError("remote service gave up")
            raised.append(exc)
            raise exc
        return x

    p = sl.Pipeline()
    p.from_iterable(range(3)).map(remote).collect()
    with pytest.raises(sl.UserFunctionError) as info:
        await asyncio.wait_for(p.run_async(), SAFETY)
    err = info.value
    assert not isinstance(err, sl.OperatorTimeoutError)
    assert err.__cause__ is raised[0]
    assert str(err).startswith(
        "operator 'remote': TimeoutError: remote service gave up while processing record 1.")


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_timed_out_record_goes_to_dead_letters(concurrency: int) -> None:
    never = asyncio.Event()

    @sl.operator(concurrency=concurrency, timeout=timedelta(milliseconds=50))
    async def lookup(x: int) -> int:
        if x in (1, 4):
            await never.wait()
        return x * 10

    p = sl.Pipeline()
    looked_up = p.from_iterable(range(6)).map(lookup, on_error="dead_letter")
    out = looked_up.collect()
    dead = looked_up.dead_letters().collect()
    await asyncio.wait_for(p.run_async(), SAFETY)
    assert out == [0, 20, 30, 50]
    assert [d.value for d in dead] == [1, 4]
    for d in dead:
        assert isinstance(d, sl.DeadLetter)
        assert d.operator == "lookup"
        assert isinstance(d.error, sl.OperatorTimeoutError)
        assert str(d.error).startswith(
            f"operator 'lookup': async call timed out after 50 ms on record {d.value}.")


async def test_call_within_its_timeout_succeeds() -> None:
    @sl.operator(timeout=timedelta(seconds=30), concurrency=2)
    async def quick(x: int) -> int:
        await yield_turns(2)
        return x + 1

    p = sl.Pipeline()
    out = p.from_iterable(range(5)).map(quick).collect()
    await asyncio.wait_for(p.run_async(), SAFETY)
    assert out == [1, 2, 3, 4, 5]


async def test_timeout_on_async_reduce_is_enforced_or_rejected() -> None:
    """A timeout given to an async reduce must not be silently ignored."""
    never = asyncio.Event()

    @sl.operator(timeout=timedelta(milliseconds=50))
    async def slow_add(acc: int, x: int) -> int:
        await never.wait()
        return acc + x

    p = sl.Pipeline()
    try:
        p.from_iterable([1, 1]).key_by(lambda x: x).reduce(slow_add).collect()
    except sl.StreamletConfigError:
        return  # rejected up front: fine
    try:
        await asyncio.wait_for(p.run_async(), SAFETY)
    except sl.OperatorTimeoutError as err:
        assert err.operator == "slow_add"
        return
    except TimeoutError:  # only our safety bound fired: the 50 ms never applied
        pytest.fail("timeout=50ms on an async reduce was ignored; the call never timed out",
                    pytrace=False)
    pytest.fail("the reduce finished although its function never returns")


# -- options --------------------------------------------------------------------


async def test_decorator_name_and_on_error_are_defaults_for_the_operator() -> None:
    @sl.operator(name="parse", on_error="dead_letter")
    async def parse(text: str) -> int:
        await asyncio.sleep(0)
        return int(text)

    p = sl.Pipeline()
    parsed = p.from_iterable(["1", "x", "3"]).map(parse)
    out = parsed.collect()
    dead = parsed.dead_letters().collect()
    await p.run_async()
    assert parsed.name == "parse"
    assert out == [1, 3]
    assert [(d.operator, d.value) for d in dead] == [("parse", "x")]


async def test_decorated_function_still_callable_directly() -> None:
    @sl.operator(concurrency=2)
    async def plus_one(x: int) -> int:
        return x + 1

    assert await plus_one(1) == 2
