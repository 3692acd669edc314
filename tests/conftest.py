"""Shared test setup."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Finalise leftovers of earlier jobs here, not in the middle of pytest's reporting.

    A failed job can leave a task whose exception was never retrieved; asyncio
    logs it with a traceback when the task is collected, and on CPython 3.11.7
    that logging, when it lands inside pytest's own ``ast.parse`` of a failure,
    crashes the session with "AST constructor recursion depth mismatch".
    """
    yield
    gc.collect(1)  # the young generations: where a just-finished job's tasks are
