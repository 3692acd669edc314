"""A task's mailbox: work that must run on the task, between two batches.

Processing-time timers and idleness checks come due at arbitrary moments,
but operator code must never run in the middle of another batch of the same
chain. So a timer only *posts* an action here; the task runs it at its next
turn, exactly as Flink's mailbox model does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

Action = Callable[[], Awaitable[None]]


class Mailbox:
    def __init__(self) -> None:
        self.mail: deque[Action] = deque()
        self.wake: Callable[[], None] = lambda: None
        self.in_use = False  # set by operators that will post; lets other tasks skip the checks

    def post(self, action: Action) -> None:
        self.mail.append(action)
        self.wake()

    def __bool__(self) -> bool:
        return bool(self.mail)

    async def run_all(self) -> None:
        mail = self.mail
        while mail:
            await mail.popleft()()


class _Mail:
    """What a gate returns when the mailbox has work."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MAIL"


MAIL = _Mail()
