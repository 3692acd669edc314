"""Worker processes and the control channel, with real spawned processes.

Nothing here waits on time: a killed worker is seen through its exit and its
closed channel; a frozen one (SIGSTOP) through its missing heartbeats, with a
small heartbeat_timeout. ``GUARD_S`` only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streamlet._locate import load_pipeline
from streamlet.cluster import control, frames
from streamlet.cluster.frames import AuthenticationError
from streamlet.cluster.workers import (
    WorkerFailedError,
    WorkerLostError,
    WorkerPool,
    WorkerSettings,
    describe_exit,
)
from streamlet.errors import StreamletConfigError, StreamletError

GUARD_S = 60.0

JOB = textwrap.dedent("""
    import multiprocessing
    import streamlet as sl

    pipeline = sl.Pipeline("pooled")
    stream = pipeline.from_iterable(range(10)).map(lambda n: n * 2)
    if DIFFERS and multiprocessing.parent_process() is not None:  # in a worker only
        stream = stream.filter(lambda n: n > 2)
    stream.key_by(lambda n: n % 3).reduce(lambda a, b: a + b).collect()
""")

FAST = WorkerSettings(heartbeat_interval=0.05, heartbeat_timeout=2.0, start_timeout=GUARD_S,
                      cancel_grace=10.0)
STOPPABLE = WorkerSettings(heartbeat_interval=0.1, heartbeat_timeout=1.0,
                           start_timeout=GUARD_S, cancel_grace=10.0)


def write_job(directory: Path, name: str, *, differs: bool = False, broken: bool = False) -> str:
    source = JOB.replace("DIFFERS", str(differs))
    if broken:
        source = "raise RuntimeError('the user module is broken: 42')\n" + source
    (directory / f"{name}.py").write_text(source)
    return f"{directory / name}.py:pipeline"


def fingerprint_of(target: str) -> str:
    return control.plan_fingerprint(load_pipeline(target))


async def guarded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, GUARD_S)


@pytest.fixture
async def pools() -> AsyncIterator[list[WorkerPool]]:
    """Pools a test launched; closed afterwards, and then nothing of theirs runs."""
    started: list[WorkerPool] = []
    yield started
    for pool in started:
        await guarded(pool.close())
        assert_all_stopped(pool)


async def launch(pools: list[WorkerPool], target: str, workers: int = 3,
                 settings: WorkerSettings = FAST, fingerprint: str | None = None) -> WorkerPool:
    pool: WorkerPool = await guarded(WorkerPool.launch(
        target, workers, fingerprint=fingerprint or fingerprint_of(target), settings=settings))
    pools.append(pool)
    return pool


def assert_all_stopped(pool: WorkerPool) -> None:
    """Every process exited and was reaped: none is a child of this process any more."""
    assert all(code is not None for code in pool.exit_codes)
    for pid in pool.pids:
        assert pid is not None
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


# -- messages ------------------------------------------------------------------------


def test_every_control_message_round_trips() -> None:
    messages: list[control.Message] = [
        control.Hello(1, 4242, "abc"), control.Failure(2, "RuntimeError", "boom", "tb"),
        control.Deploy(0, 3, "m:p", 0, 43), control.Deployed(0), control.Start(),
        control.Heartbeat(2, 1000), control.TriggerCheckpoint(7),
        control.CheckpointComplete(7), control.Finished(1), control.StopJob(),
        control.Finish(), control.Cancel()]
    for message in messages:
        kind, payload = control.encode(message)
        assert kind == control.CONTROL < 0x80
        assert control.decode(kind, payload) == message


@pytest.mark.parametrize(("kind", "payload", "error"), [
    (0x02, b"{}", "expected a control frame"),
    (control.CONTROL, b"\xff", "not JSON"),
    (control.CONTROL, b"[1]", "JSON object with a string 'type'"),
    (control.CONTROL, b'{"type":"launch"}', "unknown control message type 'launch'"),
    (control.CONTROL, b'{"type":"heartbeat"}',
     r"has fields \[\], expected \['records', 'worker'\]"),
    (control.CONTROL, b'{"type":"heartbeat","worker":"1","records":0}',
     "'worker' must be int, got str"),
    (control.CONTROL, b'{"type":"heartbeat","worker":true,"records":0}',
     "'worker' must be int, got bool"),
])
def test_a_broken_control_frame_is_refused(kind: int, payload: bytes, error: str) -> None:
    with pytest.raises(control.ControlError, match=error):
        control.decode(kind, payload)


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(None) == "is still running"


def test_settings_are_checked() -> None:
    with pytest.raises(StreamletConfigError, match="longer than heartbeat_interval"):
        WorkerSettings(heartbeat_interval=2.0, heartbeat_timeout=1.0)
    with pytest.raises(StreamletConfigError, match="cancel_grace must be a positive"):
        WorkerSettings(cancel_grace=0)


# -- processes -----------------------------------------------------------------------


async def test_three_workers_say_hello_with_the_same_plan_and_stop_when_cancelled(
        tmp_path: Path, pools: list[WorkerPool]) -> None:
    target = write_job(tmp_path, "job_ok")
    pool = await launch(pools, target)
    expected = fingerprint_of(target)
    infos = pool.workers
    assert [w.index for w in infos] == [0, 1, 2]
    assert all(w.fingerprint == expected for w in infos)
    pids = [w.pid for w in infos]
    assert pids == pool.pids and os.getpid() not in pids
    assert pool.exit_codes == [None, None, None]  # running
    control_path = pool.control_path
    assert control_path is not None and control_path.parent.stat().st_mode & 0o077 == 0

    await guarded(pool.start_job())
    await guarded(pool.wait_heartbeats(3))  # they keep beating
    assert min(pool.statistics().heartbeats) >= 3

    assert await guarded(pool.cancel()) == [0, 0, 0]
    assert_all_stopped(pool)
    with pytest.raises(StreamletError, match="cancelled"):
        await pool.send_all(control.Start())
    await guarded(pool.close())
    assert not control_path.parent.exists()


async def test_a_module_that_raises_on_import_fails_the_launch_with_its_error(
        tmp_path: Path) -> None:
    target = write_job(tmp_path, "job_broken", broken=True)
    with pytest.raises(WorkerFailedError) as caught:
        await guarded(WorkerPool.launch(target, 3, fingerprint="unused", settings=FAST))
    error = caught.value
    message = str(error)
    assert f"failed to load the pipeline {target!r}: RuntimeError: the user module is broken: "\
        "42" in message
    assert "job_broken.py" in message and "Traceback in the worker" in message
    assert error.error_type == "RuntimeError" and error.worker in (0, 1, 2)
    assert message.startswith(f"worker {error.worker} (pid {error.pid}) ")
    assert multiprocessing.active_children() == []  # all stopped and reaped


async def test_a_worker_that_never_says_hello_fails_the_launch_after_start_timeout(
        tmp_path: Path) -> None:
    (tmp_path / "job_hangs.py").write_text("import threading\nthreading.Event().wait()\n")
    settings = WorkerSettings(heartbeat_interval=0.05, heartbeat_timeout=1.0,
                              start_timeout=3.0)
    with pytest.raises(WorkerLostError, match=r"^worker 0 \(pid \d+\) (connected but did not "
                                              r"say hello|did not connect) within 3.0 s"):
        await guarded(WorkerPool.launch(f"{tmp_path / 'job_hangs.py'}:pipeline", 1,
                                        fingerprint="unused", settings=settings))
    assert multiprocessing.active_children() == []


async def test_a_worker_with_another_plan_is_refused(tmp_path: Path) -> None:
    target = write_job(tmp_path, "job_differs", differs=True)  # a filter in workers only
    with pytest.raises(StreamletConfigError, match=r"worker \d \(pid \d+\) built another "
                                                   r"pipeline from .*plan fingerprint"):
        await guarded(WorkerPool.launch(target, 2, fingerprint=fingerprint_of(target),
                                        settings=FAST))
    assert multiprocessing.active_children() == []


async def test_a_killed_worker_is_lost_by_its_signal_and_the_others_are_stopped(
        tmp_path: Path, pools: list[WorkerPool]) -> None:
    pool = await launch(pools, write_job(tmp_path, "job_kill"))
    victim = pool.workers[1]
    os.kill(victim.pid, signal.SIGKILL)
    error = await guarded(pool.wait_lost())
    assert isinstance(error, WorkerLostError)
    assert error.worker == 1 and error.pid == victim.pid
    assert str(error).startswith(f"worker 1 (pid {victim.pid}) was killed by SIGKILL")
    assert_all_stopped(pool)
    assert pool.exit_codes == [0, -signal.SIGKILL, 0]  # the others stopped when asked
    with pytest.raises(WorkerLostError, match="SIGKILL"):
        await pool.send_all(control.Start())


async def test_a_frozen_worker_is_lost_by_its_missing_heartbeats(
        tmp_path: Path, pools: list[WorkerPool]) -> None:
    pool = await launch(pools, write_job(tmp_path, "job_stop"), settings=STOPPABLE)
    await guarded(pool.wait_heartbeats(1))
    victim = pool.workers[2]
    os.kill(victim.pid, signal.SIGSTOP)
    with pytest.raises(WorkerLostError) as caught:
        await guarded(pool.wait_for(lambda: False))  # until worker 2 is lost
    error = caught.value
    assert error.worker == 2 and error.pid == victim.pid
    assert str(error) == (f"worker 2 (pid {victim.pid}) missed its heartbeats: nothing for "
                          "1.0 s (heartbeat_timeout; one is sent every 0.1 s): it hangs or "
                          "was stopped")
    assert_all_stopped(pool)
    assert pool.exit_codes == [0, 0, -signal.SIGKILL]


async def test_a_peer_without_the_secret_cannot_join(
        tmp_path: Path, pools: list[WorkerPool]) -> None:
    pool = await launch(pools, write_job(tmp_path, "job_secret"), workers=2)
    assert pool.control_path is not None
    with pytest.raises(AuthenticationError, match="refused this connection"):
        await guarded(frames.connect(pool.control_path, secrets.token_bytes(32),
                                     name="worker 0"))
    await guarded(pool.wait_heartbeats(2))  # the workers did not notice
    assert await guarded(pool.cancel()) == [0, 0]
