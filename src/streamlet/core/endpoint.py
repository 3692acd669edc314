"""A running job's control endpoint: ``streamlet savepoint`` talks to it.

A job with checkpointing listens on a Unix socket whose path follows from
its name and checkpoint storage, so a second process that loads the same
pipeline (the CLI) finds it without configuration. The socket lives in a
directory only its user can enter (0700), and is itself 0600: the file
system is the authentication, and nothing is reachable over the network.
One request per connection, one JSON line each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from streamlet.errors import StreamletError

Handler = Callable[[str], Awaitable[dict[str, Any]]]

log = logging.getLogger("streamlet.checkpoints")


def socket_path(job: str, storage_url: str) -> Path:
    """Where the job named ``job`` checkpointing to ``storage_url`` listens; short,
    because a Unix socket path has a limit of about a hundred bytes."""
    digest = hashlib.sha256(f"{job}\n{storage_url}".encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"streamlet-{os.getuid()}" / f"{digest}.sock"


class ControlEndpoint:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a job that was killed
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                command = json.loads(line)["command"]
                reply = await self.handler(str(command))
            except StreamletError as exc:
                reply = {"ok": False, "error": str(exc)}
            except (ValueError, KeyError, TypeError):
                reply = {"ok": False, "error": f"not a request: {line[:100]!r}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        await close_unix_server(server, self.path)


async def close_unix_server(server: asyncio.AbstractServer | None, path: Path) -> None:
    """Stop listening and remove the socket file, which outlives the server."""
    if server is not None:
        server.close()
        await server.wait_closed()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # noqa: ASYNC240  # a socket file: no I/O worth a thread


async def request(path: Path, command: str) -> dict[str, Any]:
    """Send one command to the job listening at ``path``; its reply."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise StreamletError(
            f"no running job answers at {path} ({exc.strerror}); is the job running, "
            "with checkpointing, as this user, on this machine?") from None
    try:
        writer.write(json.dumps({"command": command}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise StreamletError(f"the job at {path} closed the connection without an answer")
    reply: dict[str, Any] = json.loads(line)
    return reply


async def serve_savepoints(job: str, config: Any, coordinator: Any) -> ControlEndpoint | None:
    """Listen for ``streamlet savepoint`` on behalf of a running job (its
    ``Checkpointing`` and checkpoint coordinator); a job that cannot (no Unix
    sockets, a path too long) runs without, and says so."""
    async def handle(command: str) -> dict[str, Any]:
        if command != "savepoint":
            return {"ok": False, "error": f"unknown command {command!r}"}
        return {"ok": True, "checkpoint_id": await coordinator.savepoint()}

    endpoint = ControlEndpoint(socket_path(job, config.storage_url(job)), handle)
    try:
        await endpoint.start()
    except (OSError, NotImplementedError) as exc:
        log.warning("job %r has no control endpoint (%s): 'streamlet savepoint' cannot "
                    "reach it", job, exc)
        return None
    return endpoint
