"""Every error streamlet raises, in one tree.

::

    StreamletError
    ├── StreamletConfigError (ValueError)       a pipeline or setting that cannot run
    ├── InvalidKeyError (TypeError)             a key_by produced a key of an unsupported type
    ├── InvalidTimestampError (TypeError)       a timestamp that is not int ms or a datetime,
    │                                           or a record without one in event time
    ├── StateAccessError (RuntimeError)         keyed state used where there is no current key
    ├── SourceError                             a source failed while reading; the cause is chained
    ├── ConnectorError (ConnectionError)        a source or sink could not reach the system
    │                                           it reads or writes (a Kafka broker)
    ├── CheckpointError                         a checkpoint that cannot be written, read or used
    ├── UserFunctionError                       a user function raised; the cause is chained
    │   └── OperatorTimeoutError (TimeoutError) an async user function ran past its timeout
    ├── cluster.codec.CodecError (ValueError)   bytes between processes that are no element,
    │                                           or a record that cannot be pickled
    ├── cluster.frames.ChannelError             a channel between the processes of a job failed
    │   ├── AuthenticationError (PermissionError)  the peer does not know the job's secret
    │   ├── FrameTooLargeError (ValueError)        a frame over the channel's size limit
    │   └── PeerGoneError (ConnectionError)        the other process went away mid-stream
    ├── cluster.control.ControlError (ValueError)  a control message that is not one
    └── cluster.workers.WorkerLostError         a worker process exited or stopped answering
        └── WorkerFailedError                   ... because it raised (its traceback attached)

Errors raised from inside a running operator say which operator, and where a
record is involved they show it (its repr cut short), so that the message
alone tells a user where to look. Each one also subclasses the builtin a user
would naturally catch.
"""

from __future__ import annotations

from typing import Any

_REPR_LIMIT = 200


def short_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    """A repr that never floods a log line, and never raises."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _short_str(exc: BaseException, limit: int = 500) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StreamletError(Exception):
    """The root of every error streamlet raises."""


class StreamletConfigError(StreamletError, ValueError):
    """A pipeline, operator or setting that cannot run as written."""


class InvalidKeyError(StreamletError, TypeError):
    """A key selector returned a value that cannot be a key."""

    def __init__(self, operator: str, key: Any) -> None:
        self.operator = operator
        self.key = key
        super().__init__(
            f"operator {operator!r}: key {short_repr(key)} of type {type(key).__name__} "
            "cannot be a key; keys must be str, int, float, bytes, bool, None "
            "or tuples of these. Return one of those from the key selector."
        )


class StateAccessError(StreamletError, RuntimeError):
    """Keyed state was used where there is no current key."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(
            f"keyed state {state!r} was used outside a keyed context: keyed state is scoped "
            "to the current key, so it can only be used inside process() or on_timer() of a "
            "function running on a keyed stream (after key_by)")


class CheckpointError(StreamletError):
    """A checkpoint that cannot be written, read or restored; the message says
    which one, where it is stored, and what went wrong."""


class SourceError(StreamletError):
    """A source failed while reading; ``position`` says how far it had got."""

    def __init__(self, source: str, position: str, cause: BaseException) -> None:
        self.source = source
        self.position = position
        super().__init__(f"source {source!r}, {position}: {type(cause).__name__}: {cause}")


class ConnectorError(StreamletError, ConnectionError):
    """A source or sink could not start its client for the system it reads or
    writes (no broker at the address given, a refused login); the client's own
    error is the ``__cause__``. It is not a mistake in the pipeline, so a
    restart strategy retries it."""


class InvalidTimestampError(StreamletError, TypeError):
    """A timestamp extractor returned something other than int ms or a datetime,
    or an event-time operator met a record that has no timestamp."""

    def __init__(self, operator: str, detail: str) -> None:
        self.operator = operator
        super().__init__(f"operator {operator!r}: {detail}")


class UserFunctionError(StreamletError):
    """A user function raised while processing a record.

    The original exception is the ``__cause__``; ``operator`` and ``record``
    say where it happened.
    """

    def __init__(self, operator: str, record: Any, cause: BaseException, key: Any = None,
                 has_key: bool = False, source: tuple[Any, int] | None = None) -> None:
        self.operator = operator
        self.record = record
        self.key = key
        self.source = source
        where = f"operator {operator!r}"
        if has_key:
            where += f", key {short_repr(key, 60)}"
        if source is not None:
            split, offset = source
            where += (f", topic {split[0]!r} partition {split[1]} offset {offset}"
                      if isinstance(split, tuple) and len(split) == 2
                      else f", split {split!r} offset {offset}")
        super().__init__(
            f"{where}: {type(cause).__name__}: {_short_str(cause)} "
            f"while processing record {short_repr(record)}. "
            "Fix the function, or pass on_error='dead_letter' to the operator "
            "to route such records to its dead-letter output and keep going."
        )


class OperatorTimeoutError(UserFunctionError, TimeoutError):
    """An async user function did not finish within the operator's timeout."""

    def __init__(self, operator: str, record: Any, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        cause = TimeoutError(f"no result after {timeout_ms} ms")
        super().__init__(operator, record, cause)
        self.args = (
            f"operator {operator!r}: async call timed out after {timeout_ms} ms "
            f"on record {short_repr(record)}. Raise the operator's timeout=, "
            "or pass on_error='dead_letter' to route such records aside.",
        )

    def __str__(self) -> str:
        return str(self.args[0])

