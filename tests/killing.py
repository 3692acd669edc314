"""Run a job in a subprocess and kill it with SIGKILL when its log says so.

The crash tests time their kills on the lines a job writes to stderr (a
checkpoint completing, a sink committing), read on a thread of their own so
the child never blocks on a full pipe, or on a deadline drawn from a seeded
random generator: never on sleeps.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamlet.time.clock import SystemClock

CLOCK = SystemClock()
"""Wall-clock time in ms: for the deadline of a kill."""
HANG_S = 60.0
"""No line from the child for this long means it hangs: the parent fails."""


class Watch:
    """Follows an attempt's log: ``fires(line)`` says "kill it now"; so does
    ``deadline`` (a ``CLOCK`` time in ms) once it passes. This one never fires."""

    deadline: float | None = None
    pid = 0  # the attempt's process

    def fires(self, line: str) -> bool:
        return False

    def strike(self, proc: subprocess.Popen[bytes]) -> bool:
        """The kill, once ``fires`` or the deadline said so: SIGKILL to the
        attempt's process, after which there is nothing more to watch (True). A
        watch that kills something else (one of the attempt's own children)
        returns False to go on reading, with ``deadline`` reset or moved on."""
        proc.kill()  # SIGKILL, to this child only
        return True


@dataclass
class Attempt:
    returncode: int
    lines: list[str]
    killed: bool  # by the parent, with SIGKILL


def run_attempt(argv: list[str], cwd: Path, watch: Watch) -> Attempt:
    """Start the job, read its stderr line by line and kill it (SIGKILL) when
    ``watch`` says so; else wait for it to end."""
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    watch.pid = proc.pid
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stream: Any = proc.stderr) -> None:
        # on its own thread, so the child never blocks on a full pipe, whatever
        # the parent is doing
        for raw in stream:
            lines.put(raw.decode(errors="replace").rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    kill = False
    try:
        while not kill:
            deadline = watch.deadline
            timeout = HANG_S if deadline is None else max(0.0, (deadline - CLOCK.now()) / 1000)
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                if deadline is None:
                    raise AssertionError(f"the job printed nothing for {HANG_S} s; last "
                                         f"lines: {seen[-10:]}") from None
                kill = watch.strike(proc)
                continue
            if line is None:
                break  # the child has exited
            seen.append(line)
            if watch.fires(line) or (watch.deadline is not None
                                     and CLOCK.now() >= watch.deadline):
                kill = watch.strike(proc)
    except BaseException:
        proc.kill()  # the parent failed: leave no process behind
        raise
    finally:
        proc.wait()
        reader.join()
        proc.stderr.close()
    while not lines.empty():  # what the child printed between the kill and its end
        line = lines.get_nowait()
        if line is not None:
            seen.append(line)
    # a child that exited by itself just before the kill was not killed
    return Attempt(proc.returncode, seen, kill and proc.returncode == -9)
