"""User functions: plain ``def`` or ``async def``, and the ``@operator`` options.

A plain function is called inline, a whole batch per C-level loop. An
``async def`` (or async generator) function runs in an async-I/O operator
that keeps up to ``concurrency`` calls in flight. The options travel with the
function when it is decorated, so the same function can be passed to
``map``, ``filter``, ``flat_map`` or ``sink``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from streamlet.errors import StreamletConfigError
from streamlet.time.durations import to_millis

ON_ERROR_CHOICES = ("fail", "dead_letter")

F = TypeVar("F", bound=Callable[..., Any])


def check_on_error(on_error: str, operator: str) -> str:
    if on_error not in ON_ERROR_CHOICES:
        raise StreamletConfigError(
            f"operator {operator!r}: on_error={on_error!r}; choose 'fail' or 'dead_letter'")
    return on_error


def _call_method(fn: Any) -> Any:
    """The ``__call__`` of a callable object, for objects that define one in Python."""
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return None
    return vars(type(fn)).get("__call__")


def is_async_callable(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = _call_method(fn)
    return call is not None and (
        inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))


def _is_async_gen(fn: Any) -> bool:
    if inspect.isasyncgenfunction(fn):
        return True
    call = _call_method(fn)
    return call is not None and inspect.isasyncgenfunction(call)


@dataclass(frozen=True)
class OperatorOptions:
    """Options set by ``@sl.operator``; anything left ``None`` takes the default."""

    concurrency: int | None = None
    ordered: bool | None = None
    timeout_ms: int | None = None
    name: str | None = None
    on_error: str | None = None


class DecoratedFunction:
    """A user function carrying its ``@sl.operator`` options; calls pass through."""

    def __init__(self, fn: Callable[..., Any], options: OperatorOptions) -> None:
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<streamlet operator {getattr(self.fn, '__qualname__', self.fn)!r}>"


@overload
def operator(fn: F, /) -> F: ...


@overload
def operator(*, concurrency: int | None = None, ordered: bool | None = None,
             timeout: timedelta | int | None = None, name: str | None = None,
             on_error: str | None = None) -> Callable[[F], F]: ...


def operator(fn: Any = None, /, *, concurrency: int | None = None, ordered: bool | None = None,
             timeout: timedelta | int | None = None, name: str | None = None,
             on_error: str | None = None) -> Any:
    """Attach operator options to a function, most usefully an ``async def``.

    ``concurrency`` bounds the calls in flight (default 1: one at a time, in
    order); ``ordered=False`` emits results as they complete instead of in
    input order; ``timeout`` fails a call that runs longer (timedelta or ms).
    ``name`` and ``on_error`` are the defaults for every operator the function
    is used in.
    """
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(
            concurrency, int) or concurrency < 1):
        raise StreamletConfigError(f"concurrency must be a positive int, got {concurrency!r}")
    if on_error is not None:
        check_on_error(on_error, name or "operator")
    timeout_ms = None if timeout is None else to_millis(timeout, "timeout")
    if timeout_ms == 0:
        raise StreamletConfigError("timeout must be positive")
    options = OperatorOptions(concurrency, ordered, timeout_ms, name, on_error)

    def decorate(f: Any) -> Any:
        if not callable(f):
            raise StreamletConfigError(f"@operator decorates a function, not {f!r}")
        return DecoratedFunction(f, options)

    return decorate(fn) if fn is not None else decorate


@dataclass(frozen=True)
class UserFunction:
    """A user function resolved for one operator: how to call it and with what limits."""

    call: Callable[..., Any]
    is_async: bool
    is_async_gen: bool
    concurrency: int
    ordered: bool
    timeout_ms: int | None
    default_name: str
    name: str | None
    on_error: str | None


def resolve(fn: Any, what: str) -> UserFunction:
    if not callable(fn):
        raise StreamletConfigError(f"{what}() takes a function, got {fn!r}")
    options = OperatorOptions()
    if isinstance(fn, DecoratedFunction):
        options = fn.options
        fn = fn.fn
    default_name = getattr(fn, "__name__", None) or what
    if default_name == "<lambda>" or not default_name.isidentifier():
        default_name = what
    return UserFunction(
        call=fn,
        is_async=is_async_callable(fn),
        is_async_gen=_is_async_gen(fn),
        concurrency=options.concurrency or 1,
        ordered=True if options.ordered is None else options.ordered,
        timeout_ms=options.timeout_ms,
        default_name=default_name,
        name=options.name,
        on_error=options.on_error,
    )
