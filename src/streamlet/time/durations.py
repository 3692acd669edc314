"""Durations: ``timedelta`` or int milliseconds, as in Kafka and Flink."""

from __future__ import annotations

from datetime import timedelta

from streamlet.errors import StreamletConfigError


def to_millis(value: timedelta | int | float, what: str) -> int:
    """Durations are ``timedelta`` or int milliseconds, as in Kafka and Flink."""
    if isinstance(value, timedelta):
        ms = value / timedelta(milliseconds=1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = value
    else:
        raise StreamletConfigError(
            f"{what} must be a datetime.timedelta or int milliseconds, not {value!r}")
    if ms < 0:
        raise StreamletConfigError(f"{what} must not be negative, got {value!r}")
    return int(ms)
