"""How failures surface: user functions, keys, sources and configuration.

A failing user function fails the run with ``sl.UserFunctionError`` naming the
operator and showing the record, or, with ``on_error="dead_letter"``, sends
the record and its exception to the operator's dead-letter output while the
good records keep flowing.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import streamlet as sl
from streamlet.errors import short_repr

RECORDS = [1, 2, 3, 4, 5, 6]
KINDS = ["map", "filter", "flat_map", "key_by", "reduce", "sink"]
VARIANTS = ["sync", "async", "async_concurrent"]
FIX_HINT = ("Fix the function, or pass on_error='dead_letter' to the operator to route "
            "such records to its dead-letter output and keep going.")


class Calls:
    """Counts calls per record and keeps the exceptions raised."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.count: dict[int, int] = {}
        self.raised: dict[int, ValueError] = {}
        self.sunk: list[int] = []

    def check(self, x: int) -> None:
        self.count[x] = self.count.get(x, 0) + 1
        if x in self.bad:
            exc = ValueError(f"bad value {x}")
            self.raised[x] = exc
            raise exc


def _result(kind: str, calls: Calls, args: tuple[int, ...]) -> Any:
    x = args[-1]
    calls.check(x)
    if kind == "map":
        return x * 10
    if kind == "filter":
        return True
    if kind == "flat_map":
        return [x, x]
    if kind == "key_by":
        return "k"
    if kind == "reduce":
        return args[0] + x
    calls.sunk.append(x)
    return None


def user_function(kind: str, variant: str, calls: Calls,
                  fn_name: str = "check_value") -> Callable[..., Any]:
    fn: Callable[..., Any]
    if variant == "sync":
        def fn(*args: int) -> Any:
            return _result(kind, calls, args)
    else:
        async def fn(*args: int) -> Any:
            await asyncio.sleep(0)
            return _result(kind, calls, args)
    fn.__name__ = fn.__qualname__ = fn_name
    if variant == "async_concurrent":
        # a reduce folds one record after another and refuses concurrency=
        return sl.operator(concurrency=3 if kind != "reduce" else None)(fn)
    return fn


def build(p: sl.Pipeline, kind: str, fn: Callable[..., Any], calls: Calls,
          **options: Any) -> tuple[sl.Stream | sl.Sink, list[Any]]:
    stream = p.from_iterable(RECORDS)
    op: sl.Stream | sl.Sink
    if kind == "reduce":
        op = stream.key_by(lambda x: "k").reduce(fn, **options)
        return op, op.collect()
    if kind == "sink":
        op = stream.sink(fn, **options)
        return op, calls.sunk
    op = getattr(stream, kind)(fn, **options)
    assert isinstance(op, sl.Stream)
    return op, op.collect()


# good output from RECORDS when 3 and 5 fail
EXPECTED_WITHOUT_3_AND_5 = {
    "map": [10, 20, 40, 60],
    "filter": [1, 2, 4, 6],
    "flat_map": [1, 1, 2, 2, 4, 4, 6, 6],
    "key_by": [1, 2, 4, 6],
    "reduce": [1, 3, 7, 13],
    "sink": [1, 2, 4, 6],
}


# -- failing the run ------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1024, 2])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_failure_names_operator_shows_record_and_chains_cause(
        kind: str, variant: str, batch_size: int) -> None:
    calls = Calls({3})
    p = sl.Pipeline(batch_size=batch_size)
    build(p, kind, user_function(kind, variant, calls), calls, name="price-check")
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    err = info.value
    where = "operator 'price-check', key 'k'" if kind == "reduce" else "operator 'price-check'"
    assert str(err) == f"{where}: ValueError: bad value 3 while processing record 3. {FIX_HINT}"
    assert err.operator == "price-check"
    assert err.record == 3
    assert err.__cause__ is calls.raised[3]
    assert not isinstance(err, sl.OperatorTimeoutError)
    assert calls.count[3] == 1  # the failing record's function ran exactly once


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_default_operator_name_is_the_function_name(kind: str, variant: str) -> None:
    calls = Calls({3})
    p = sl.Pipeline()
    op, _ = build(p, kind, user_function(kind, variant, calls, "normalise_amount"), calls)
    assert op.name == "normalise_amount"
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'normalise_amount'(, key 'k')?: "
                       r"ValueError: bad value 3 while processing record 3\. "):
        p.run()


@pytest.mark.parametrize("kind", ["map", "filter", "flat_map", "key_by", "sink"])
def test_lambda_operator_is_named_after_its_kind(kind: str) -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1, 0, 2])
    if kind == "flat_map":
        op = stream.flat_map(lambda x: [1 // x])
    else:
        op = getattr(stream, kind)(lambda x: 1 // x)
    assert op.name == kind
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        f"operator '{kind}': ZeroDivisionError: integer division or modulo by zero "
        f"while processing record 0. {FIX_HINT}")
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_lambda_reduce_is_named_reduce_and_shows_the_key() -> None:
    p = sl.Pipeline()
    (p.from_iterable([("a", 1), ("b", 2), ("a", 0)])
        .key_by(lambda r: r[0])
        .reduce(lambda acc, r: (r[0], 1 // r[1]))
        .collect())
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'reduce', key 'a': ZeroDivisionError: integer division or modulo by zero "
        f"while processing record ('a', 0). {FIX_HINT}")
    assert info.value.key == "a"


def test_second_default_name_gets_a_suffix_and_errors_name_it() -> None:
    p = sl.Pipeline()
    first = p.from_iterable([1, 2]).map(lambda x: x + 1)
    second = first.map(lambda x: 1 // (x - 3))
    second.collect()
    assert (first.name, second.name) == ("map", "map-2")
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'map-2': ZeroDivisionError"):
        p.run()


@pytest.mark.parametrize("variant", VARIANTS)
def test_huge_record_is_cut_short_in_the_message(variant: str) -> None:
    huge = {"payload": "x" * 100_000}

    def explode(record: dict[str, str]) -> None:
        raise KeyError("missing")

    async def explode_async(record: dict[str, str]) -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    fn: Any = explode if variant == "sync" else explode_async
    if variant == "async_concurrent":
        fn = sl.operator(concurrency=2)(fn)
    p = sl.Pipeline()
    p.from_iterable([huge]).map(fn, name="explode").collect()
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    message = str(info.value)
    cut = repr(huge)[:197] + "..."
    assert message == (f"operator 'explode': KeyError: 'missing' while processing record "
                       f"{cut}. {FIX_HINT}")
    assert len(cut) == 200
    assert len(message) < 500
    assert info.value.record is huge  # the record itself is kept whole on the error


def test_record_with_a_broken_repr_still_gives_a_message() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    def fail(x: Any) -> Any:
        raise ValueError("nope")

    p = sl.Pipeline()
    p.from_iterable([Broken()]).map(fail).collect()
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value) == (
        "operator 'fail': ValueError: nope while processing record "
        "<unrepresentable Broken: RuntimeError('no repr for you')>. " + FIX_HINT)


def test_short_repr_bounds() -> None:
    assert short_repr("abc") == "'abc'"
    text = short_repr("y" * 1000)
    assert len(text) == 200
    assert text.endswith("...")
    assert short_repr(list(range(100)), 20) == "[0, 1, 2, 3, 4, 5..."


def test_failure_after_records_were_delivered_keeps_the_delivered_ones() -> None:
    seen: list[int] = []

    def fail_on_4(x: int) -> int:
        if x == 4:
            raise ValueError("four")
        return x

    p = sl.Pipeline(batch_size=2)
    p.from_iterable(range(10)).map(fail_on_4).sink(seen.append)
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'fail_on_4': ValueError: four"):
        p.run()
    assert seen == [0, 1, 2, 3]


# -- dead letters ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1024, 1, 4])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_dead_letters_take_failed_records_and_the_rest_flow_in_order(
        kind: str, variant: str, batch_size: int) -> None:
    calls = Calls({3, 5})
    p = sl.Pipeline(batch_size=batch_size)
    op, out = build(p, kind, user_function(kind, variant, calls), calls,
                    name="checker", on_error="dead_letter")
    dead = op.dead_letters().collect()
    p.run()
    assert out == EXPECTED_WITHOUT_3_AND_5[kind]
    assert [d.value for d in dead] == [3, 5]
    for d in dead:
        assert isinstance(d, sl.DeadLetter)
        assert d.operator == "checker"
        assert d.error is calls.raised[d.value]
        assert d.key == ("k" if kind == "reduce" else None)
        assert d.error_message == f"ValueError: bad value {d.value}"
    # every record's function ran exactly once, the failing ones included
    called = RECORDS[1:] if kind == "reduce" else RECORDS
    assert calls.count == dict.fromkeys(called, 1)


def test_dead_letter_repr() -> None:
    letter = sl.DeadLetter("parse", "x", ValueError("bad"))
    assert repr(letter) == "DeadLetter(operator='parse', value='x', error='ValueError: bad')"


def test_dead_letters_can_be_processed_further() -> None:
    p = sl.Pipeline()
    parsed = p.from_iterable(["1", "two", "3", "four"]).map(int, name="parse",
                                                             on_error="dead_letter")
    good = parsed.collect()
    messages = parsed.dead_letters().map(lambda d: f"{d.value}: {d.error_message}").collect()
    p.run()
    assert good == [1, 3]
    assert messages == [
        "two: ValueError: invalid literal for int() with base 10: 'two'",
        "four: ValueError: invalid literal for int() with base 10: 'four'",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_dead_letter_without_a_reader_is_rejected_at_run(kind: str) -> None:
    calls = Calls(set())
    p = sl.Pipeline()
    build(p, kind, user_function(kind, "sync", calls), calls, name="orphan",
          on_error="dead_letter")
    expected = (
        "operator 'orphan' sends failed records to its dead-letter output, but nothing "
        "reads it, so they would be lost. Read them with stream.dead_letters().sink(...), "
        "or drop on_error='dead_letter'.")
    with pytest.raises(sl.StreamletConfigError) as info:
        p.run()
    assert str(info.value) == expected
    assert isinstance(info.value, ValueError)
    assert calls.count == {}  # nothing ran


def test_dead_letters_of_an_operator_without_dead_letter_mode_is_rejected() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1]).map(str, name="fmt")
    with pytest.raises(sl.StreamletConfigError) as info:
        stream.dead_letters()
    assert str(info.value) == ("operator 'fmt' has no dead-letter output; "
                               "give it on_error='dead_letter' first")


def test_call_site_on_error_overrides_the_decorator() -> None:
    @sl.operator(on_error="dead_letter")
    def parse(text: str) -> int:
        return int(text)

    p = sl.Pipeline()
    p.from_iterable(["1", "x"]).map(parse, on_error="fail").collect()
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'parse': ValueError"):
        p.run()


@pytest.mark.parametrize("keyed", [False, True])
def test_flat_map_generator_failing_midway_emits_the_same_whether_keyed_or_not(
        keyed: bool) -> None:
    """A record that fails part-way through a generator is handled one way, on any path."""

    def words(line: str) -> Iterator[str]:
        for word in line.split():
            if word == "BAD":
                raise ValueError("bad word")
            yield word

    p = sl.Pipeline()
    stream = p.from_iterable(["a b", "c BAD d", "e"])
    if keyed:
        stream = stream.key_by(len)
    split = stream.flat_map(words, name="words", on_error="dead_letter")
    out = split.collect()
    dead = split.dead_letters().collect()
    p.run()
    assert [d.value for d in dead] == ["c BAD d"]
    # the failed record's partial output is dropped (as the keyed path and async do)
    assert out == ["a", "b", "e"]


# -- StopIteration from a user function -------------------------------------------


@pytest.mark.parametrize("batch_size", [1024, 3])
@pytest.mark.parametrize("bad", [1, 3, 4, 6])
def test_map_raising_stop_iteration_fails_instead_of_dropping_records(
        bad: int, batch_size: int) -> None:
    def stop_on_bad(x: int) -> int:
        if x == bad:
            raise StopIteration
        return x

    p = sl.Pipeline(batch_size=batch_size)
    out = p.from_iterable(RECORDS).map(stop_on_bad).collect()
    with pytest.raises(sl.UserFunctionError) as info:
        p.run()
    assert str(info.value).startswith("operator 'stop_on_bad': ")
    assert "StopIteration" in str(info.value)
    assert f"while processing record {bad}." in str(info.value)
    assert bad not in out


@pytest.mark.parametrize("bad", [2, 4])
def test_map_stop_iteration_goes_to_dead_letters_and_nothing_is_dropped(bad: int) -> None:
    def stop_on_bad(x: int) -> int:
        if x == bad:
            raise StopIteration
        return x

    p = sl.Pipeline()
    mapped = p.from_iterable([1, 2, 3, 4]).map(stop_on_bad, on_error="dead_letter")
    out = mapped.collect()
    dead = mapped.dead_letters().collect()
    p.run()
    assert out == [x for x in [1, 2, 3, 4] if x != bad]
    assert [d.value for d in dead] == [bad]


@pytest.mark.parametrize("kind", ["filter", "key_by", "sink"])
def test_stop_iteration_on_the_last_record_is_not_silently_lost(kind: str) -> None:
    seen: list[int] = []

    def stop_on_3(x: int) -> Any:
        seen.append(x)
        if x == 3:
            raise StopIteration
        return True

    p = sl.Pipeline()
    op = getattr(p.from_iterable([1, 2, 3]), kind)(stop_on_3)
    if kind != "sink":
        op.collect()
    with pytest.raises(sl.UserFunctionError, match=r"StopIteration.* while processing record 3\."):
        p.run()
    assert seen == [1, 2, 3]


def test_async_stop_iteration_is_a_user_function_error() -> None:
    async def stop(x: int) -> int:
        await asyncio.sleep(0)
        if x == 2:
            raise StopIteration
        return x

    p = sl.Pipeline()
    p.from_iterable([1, 2, 3]).map(stop).collect()
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'stop': RuntimeError: "
                       r"coroutine raised StopIteration while processing record 2\."):
        p.run()


# -- invalid keys ---------------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


BAD_KEYS = [
    ([1, 2], "[1, 2]", "list"),
    ({"a": 1}, "{'a': 1}", "dict"),
    ({1}, "{1}", "set"),
    (Opaque(), "Opaque()", "Opaque"),
    ((1, [2]), "(1, [2])", "tuple"),
    (("ok", ("nested", {3})), "('ok', ('nested', {3}))", "tuple"),
]


def key_selector(variant: str, bad_key: Any) -> Callable[..., Any]:
    def pick(x: int) -> Any:
        return bad_key if x == 3 else x % 2

    fn: Callable[..., Any]
    if variant == "sync":
        fn = pick
    else:
        async def fn(x: int) -> Any:
            await asyncio.sleep(0)
            return pick(x)
    fn.__name__ = "by_account"
    if variant == "async_concurrent":
        fn = sl.operator(concurrency=2)(fn)
    return fn


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("bad_key", "shown", "type_name"), BAD_KEYS)
def test_invalid_key_raises_invalid_key_error_naming_the_operator(
        bad_key: Any, shown: str, type_name: str, variant: str) -> None:
    p = sl.Pipeline()
    p.from_iterable(RECORDS).key_by(key_selector(variant, bad_key)).collect()
    with pytest.raises(sl.InvalidKeyError) as info:
        p.run()
    err = info.value
    assert isinstance(err, TypeError)
    assert isinstance(err, sl.StreamletError)
    assert str(err) == (
        f"operator 'by_account': key {shown} of type {type_name} cannot be a key; keys must "
        "be str, int, float, bytes, bool, None or tuples of these. Return one of those "
        "from the key selector.")
    assert err.operator == "by_account"
    assert err.key is bad_key


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("bad_key", "shown", "type_name"), BAD_KEYS)
def test_invalid_key_goes_to_dead_letters(bad_key: Any, shown: str, type_name: str,
                                          variant: str) -> None:
    p = sl.Pipeline()
    keyed = p.from_iterable(RECORDS).key_by(key_selector(variant, bad_key),
                                            on_error="dead_letter")
    sums = keyed.reduce(lambda a, b: a + b).collect()
    dead = keyed.dead_letters().collect()
    p.run()
    assert [d.value for d in dead] == [3]
    assert isinstance(dead[0].error, sl.InvalidKeyError)
    assert dead[0].operator == "by_account"
    assert f"key {shown} of type {type_name} cannot be a key" in str(dead[0].error)
    # odd 1, 5 and even 2, 4, 6, record 3 left out
    assert sorted(sums) == sorted([1, 6, 2, 6, 12])


def test_valid_keys_of_every_supported_type_pass() -> None:
    keys = ["s", 1, 2.5, b"b", False, None, ("t", (1, None, b"x")), ()]  # all distinct
    p = sl.Pipeline()
    out = (p.from_iterable(range(len(keys))).key_by(lambda i: keys[i])
           .reduce(lambda a, b: a + b).collect())
    p.run()
    assert sorted(out) == list(range(len(keys)))


# -- failing sources --------------------------------------------------------------


def test_failing_source_iterator_gives_source_error_naming_the_source() -> None:
    boom = ConnectionError("feed dropped")

    def feed() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    seen: list[int] = []
    p = sl.Pipeline()
    p.from_iterable(feed(), name="ticks").sink(seen.append)
    with pytest.raises(sl.SourceError) as info:
        p.run()
    err = info.value
    assert err.source == "ticks"
    assert str(err).startswith("source 'ticks', after ")
    assert str(err).endswith(": ConnectionError: feed dropped")
    assert err.__cause__ is boom
    assert isinstance(err, sl.StreamletError)


def test_failing_source_default_name() -> None:
    def feed() -> Iterator[int]:
        raise LookupError("gone")
        yield 0  # a generator  # pragma: no cover

    p = sl.Pipeline()
    p.from_iterable(feed()).collect()
    with pytest.raises(sl.SourceError, match=r"^source 'from_iterable', after 0 records: "
                       r"LookupError: gone$"):
        p.run()


def test_failing_async_source_gives_source_error() -> None:
    boom = OSError("socket closed")

    async def feed() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0)
        yield 2
        raise boom

    seen: list[int] = []
    p = sl.Pipeline()
    p.from_async_iterable(feed(), name="socket").sink(seen.append)
    with pytest.raises(sl.SourceError) as info:
        p.run()
    assert info.value.source == "socket"
    assert str(info.value) == "source 'socket', after 2 records: OSError: socket closed"
    assert info.value.__cause__ is boom
    assert seen == [1, 2]


# -- configuration --------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "4"])
def test_operator_rejects_bad_concurrency(concurrency: Any) -> None:
    with pytest.raises(sl.StreamletConfigError) as info:
        sl.operator(concurrency=concurrency)
    assert str(info.value) == f"concurrency must be a positive int, got {concurrency!r}"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("timeout", [-1, timedelta(milliseconds=-5), -0.5])
def test_operator_rejects_negative_timeout(timeout: Any) -> None:
    with pytest.raises(sl.StreamletConfigError) as info:
        sl.operator(timeout=timeout)
    assert str(info.value) == f"timeout must not be negative, got {timeout!r}"


def test_operator_rejects_zero_and_non_duration_timeout() -> None:
    with pytest.raises(sl.StreamletConfigError, match=r"^timeout must be positive$"):
        sl.operator(timeout=0)
    with pytest.raises(sl.StreamletConfigError) as info:
        sl.operator(timeout="5s")  # type: ignore[call-overload]
    assert str(info.value) == (
        "timeout must be a datetime.timedelta or int milliseconds, not '5s'")


def test_operator_rejects_bad_on_error() -> None:
    with pytest.raises(sl.StreamletConfigError) as info:
        sl.operator(on_error="ignore", name="parse")
    assert str(info.value) == "operator 'parse': on_error='ignore'; choose 'fail' or 'dead_letter'"


def test_stream_rejects_bad_on_error() -> None:
    def parse(x: str) -> int:
        return int(x)

    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError) as info:
        p.from_iterable(["1"]).map(parse, on_error="skip")
    assert str(info.value) == "operator 'parse': on_error='skip'; choose 'fail' or 'dead_letter'"
    assert isinstance(info.value, ValueError)


def test_operator_decorates_only_callables() -> None:
    with pytest.raises(sl.StreamletConfigError, match=r"^@operator decorates a function, not 3$"):
        sl.operator(concurrency=2)(3)


@pytest.mark.parametrize("options", [{"concurrency": 2}, {"timeout": 100}])
def test_concurrency_and_timeout_are_rejected_on_a_plain_def(options: dict[str, Any]) -> None:
    @sl.operator(**options)
    def enrich(x: int) -> int:
        return x

    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError) as info:
        p.from_iterable([1]).map(enrich)
    assert str(info.value) == (
        "operator 'enrich': concurrency= and timeout= apply to async functions; "
        "this one is a plain def, called inline")


def test_non_callable_user_function_is_rejected() -> None:
    p = sl.Pipeline()
    with pytest.raises(sl.StreamletConfigError, match=r"^map\(\) takes a function, got 42$"):
        p.from_iterable([1]).map(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 200}, "workers=200 is more than max_parallelism=128, the number of key "
                       "groups that keyed state is cut into; raise max_parallelism (before "
                       "the job's first checkpoint) or use fewer workers"),
    ({"workers": 0}, "workers must be a positive int, got 0"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"batch_size": -3}, "batch_size must be a positive int, got -3"),
    ({"batch_size": 2.0}, "batch_size must be a positive int, got 2.0"),
    ({"channel_capacity": 0}, "channel_capacity must be a positive int, got 0"),
    ({"max_parallelism": False}, "max_parallelism must be a positive int, got False"),
    ({"scheduling_seed": "x"}, "scheduling_seed must be an int"),
])
def test_pipeline_rejects_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(sl.StreamletConfigError) as info:
        sl.Pipeline(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_pipeline_rejects_an_empty_name() -> None:
    with pytest.raises(sl.StreamletConfigError, match=r"^a pipeline name is a non-empty str"):
        sl.Pipeline("")


def test_duplicate_explicit_operator_names_are_rejected() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1]).map(str, name="fmt")
    with pytest.raises(sl.StreamletConfigError) as info:
        stream.map(str, name="fmt")
    assert str(info.value) == (
        "operator name 'fmt' is used twice in this pipeline; names identify operator "
        "state, so give each operator its own")


def test_explicit_name_clashing_with_a_source_or_default_name_is_rejected() -> None:
    p = sl.Pipeline()
    stream = p.from_iterable([1], name="events").map(lambda x: x)  # default name "map"
    with pytest.raises(sl.StreamletConfigError, match=r"^operator name 'events' is used twice"):
        stream.sink(print, name="events")
    with pytest.raises(sl.StreamletConfigError, match=r"^operator name 'map' is used twice"):
        stream.filter(bool, name="map")
    with pytest.raises(sl.StreamletConfigError, match=r"^operator name 'events' is used twice"):
        p.from_iterable([2], name="events")


def test_duplicate_name_from_the_decorator_is_rejected() -> None:
    @sl.operator(name="enrich")
    async def enrich(x: int) -> int:
        return x

    p = sl.Pipeline()
    stream = p.from_iterable([1]).map(enrich)
    with pytest.raises(sl.StreamletConfigError, match=r"^operator name 'enrich' is used twice"):
        stream.map(enrich)


async def test_run_inside_a_running_loop_says_to_use_run_async() -> None:
    p = sl.Pipeline()
    out = p.from_iterable([1]).collect()
    with pytest.raises(sl.StreamletError) as info:
        p.run()
    assert str(info.value) == ("Pipeline.run() was called inside a running event loop; "
                               "use 'await pipeline.run_async()' there instead")
    assert out == []
    await p.run_async()  # and run_async works there
    assert out == [1]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_failed_job_leaves_no_unretrieved_task_exception_behind(
        concurrency: int, caplog: pytest.LogCaptureFixture) -> None:
    """The failure is raised once; no task of the job is left with an unread exception."""

    @sl.operator(concurrency=concurrency)
    async def boom(x: int) -> int:
        await asyncio.sleep(0)
        raise ValueError(f"boom {x}")

    p = sl.Pipeline()
    p.from_iterable([1, 2, 3]).map(boom).collect()
    with pytest.raises(sl.UserFunctionError, match=r"^operator 'boom': ValueError: boom 1 "):
        p.run()
    gc.collect()  # an unread task exception is reported when the task is collected
    noise = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert noise == []


def test_reduce_refuses_concurrency_and_sync_timeouts() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    p = sl.Pipeline()
    keyed = p.from_iterable([1]).key_by(lambda x: x)
    with pytest.raises(sl.StreamletConfigError, match="concurrency= and ordered= do not apply"):
        keyed.reduce(sl.operator(concurrency=4)(add), name="sum")
    with pytest.raises(sl.StreamletConfigError, match="timeout= applies to async functions"):
        keyed.reduce(sl.operator(timeout=10)(lambda a, b: a + b), name="sum2")
