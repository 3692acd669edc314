"""Health and readiness for orchestrators: ``Pipeline.status()``, the HTTP
endpoint (``/healthz``, ``/readyz``, ``/``) over a real socket, and the
status file, in process and through ``streamlet run``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from test_cli import SERVED_JOB, STREAMLET

import streamlet as sl
from streamlet.core.health import HealthEndpoint
from streamlet.testing import TestSource, start


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_the_endpoint_and_the_file_follow_the_job(tmp_path: Path) -> None:
    p = sl.Pipeline("probed")
    source = TestSource()
    p.from_source(source).collect()
    status_file = tmp_path / "status.json"
    health = HealthEndpoint(p.status, port=0, host="127.0.0.1", file=status_file)
    await health.start()
    assert health.port
    try:
        assert (await get(health.port, "/readyz"))[0] == 503
        assert await get(health.port, "/healthz") == (503, {"live": False,
                                                           "state": "not running"})
        health.write_file()
        assert not status_file.exists()
        async with start(p, source) as job:
            await job.job.running.wait()
            assert await get(health.port, "/readyz") == (200, {"ready": True,
                                                              "state": "running"})
            assert (await get(health.port, "/healthz"))[0] == 200
            code, status = await get(health.port, "/")
            assert code == 200
            assert status["job"] == "probed"
            assert status["state"] == "running"
            health.write_file()
            assert json.loads(status_file.read_text())["ready"] is True
            assert (await get(health.port, "/metrics"))[0] == 404
            assert (await get(health.port, "/readyz", "POST"))[0] == 405
            source.end()
            await job.finish()
        assert (await get(health.port, "/readyz"))[0] == 503
        health.write_file()
        assert not status_file.exists()  # not ready: no file
    finally:
        await health.stop()


def test_streamlet_run_serves_health_and_removes_its_file_when_it_stops(
        tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(SERVED_JOB)
    status_file = tmp_path / "ready.json"
    proc = subprocess.Popen([*STREAMLET, "run", "served.py:pipeline", "--health-port", "0",
                             "--health-host", "127.0.0.1", "--health-file", str(status_file)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # stderr is read by one thread from start to end: lines read ahead into the
    # pipe's buffer would be lost to a later communicate(), which reads the fd
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "running"
        for _ in range(600):
            if port := re.search(r"health endpoint on http://127\.0\.0\.1:(\d+)",
                                 "".join(lines)):
                break
            time.sleep(0.05)
        assert port, "".join(lines)
        status = asyncio.run(get(int(port.group(1)), "/"))[1]
        assert (status["job"], status["state"], status["ready"]) == ("served", "running", True)
        for _ in range(100):  # as a probe would: the file appears within 0.1 s of ready
            if status_file.exists():
                break
            time.sleep(0.05)
        assert json.loads(status_file.read_text())["job"] == "served"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert not status_file.exists()
    assert "checkpoints every 3600000 ms to sqlite:///checkpoints.db" in log, log
    assert "job 'served' stopped on SIGTERM; last checkpoint 1" in log, log
