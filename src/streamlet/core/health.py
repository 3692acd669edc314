"""Health and readiness for orchestrators: an HTTP endpoint and a status file.

A sidecar runs under Kubernetes, systemd or Nomad, which ask two questions:
is the process alive (else restart it), and is it ready (else do not count
on it yet, or any more). ``GET /healthz`` answers the first: 200 as long as
the event loop answers at all, which a job stuck in a blocking call does
not. ``GET /readyz`` answers the second: 200 once every task of the job has
started (after its restore), 503 before that and while it stops. ``GET /``
gives the whole status as JSON. The status file is for probes that run a
command: it exists while the job is ready, holds the same JSON, and is
rewritten every few seconds, so its age says whether the loop still runs.

Plain asyncio streams, no web framework: three fixed paths, one response
per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("streamlet.health")

Status = Callable[[], dict[str, Any]]
REFRESH_S = 5.0
_UNTIL_READY_S = 0.1
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthEndpoint:
    def __init__(self, status: Status, *, port: int | None = None, host: str = "127.0.0.1",
                 file: str | os.PathLike[str] | None = None,
                 refresh_s: float = REFRESH_S) -> None:
        self.status = status
        self.port = port
        self.host = host
        self.file = None if file is None else Path(file)
        self.refresh_s = refresh_s
        self._server: asyncio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.port is not None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            sockets = self._server.sockets
            if sockets:
                self.port = sockets[0].getsockname()[1]  # the real one, when given 0
            log.info("health endpoint on http://%s:%d: /healthz (alive), /readyz (ready), "
                     "/ (status)", self.host, self.port)
        if self.file is not None:
            self._refresher = asyncio.ensure_future(self._refresh())
            log.info("status file %s: present while the job is ready, rewritten every %g s",
                     self.file, self.refresh_s)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self.file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- the file -----------------------------------------------------------------

    async def _refresh(self) -> None:
        while True:
            ready = self.write_file()
            # until ready, look often: the file should appear as soon as it is
            await asyncio.sleep(self.refresh_s if ready else _UNTIL_READY_S)

    def write_file(self) -> bool:
        """Write the status file when the job is ready, remove it when not; whether
        it is ready."""
        assert self.file is not None
        status = self.status()
        if not status.get("ready"):
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
            return False
        temporary = self.file.with_name(f".{self.file.name}.tmp")
        temporary.write_text(json.dumps(status, sort_keys=True) + "\n")
        temporary.replace(self.file)  # readers never see half a file
        return True

    # -- HTTP ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while (await reader.readline()).strip():  # the headers: not needed
                    pass
            code, body = self._answer(request.decode("latin-1").split())
            payload = (json.dumps(body, sort_keys=True) + "\n").encode()
            writer.write(
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, request: list[str]) -> tuple[int, dict[str, Any]]:
        if len(request) < 2:
            return 405, {"error": "expected an HTTP request line"}
        method, path = request[0], request[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"{method} is not served: use GET"}
        status = self.status()
        if path == "/healthz":
            return (200 if status["live"] else 503), {"live": status["live"],
                                                       "state": status["state"]}
        if path == "/readyz":
            return (200 if status["ready"] else 503), {"ready": status["ready"],
                                                        "state": status["state"]}
        if path == "/":
            return 200, status
        return 404, {"error": f"no {path}: try /healthz, /readyz or /"}
