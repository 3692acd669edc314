"""Frames between two processes of one job: authenticated, bounded, backpressured.

One connection carries one direction of one channel: a :class:`FrameSender`
(the process that connected) sends frames to a :class:`FrameReceiver` (the
process that listens, through :class:`FrameServer`). This is the in-process
:class:`~streamlet.core.channels.Channel` stretched over a Unix socket, with
the same promise: at most ``capacity`` frames are held for the consumer, and a
producer that would exceed that waits, which is backpressure across processes.

**Frames.** A 5-byte header, the payload's length (4 bytes, big-endian) and
its type (1 byte), then the payload. Types below 0x80 belong to the caller
(``streamlet.cluster.codec`` kinds); the ones above are this protocol's own.
A header announcing more than the receiver's ``max_frame_size`` ends the
connection before anything is allocated for it: the size a peer claims is
never trusted. Before authentication only a few hundred bytes are accepted.

**Authentication.** Each side proves that it knows the job's secret without
sending it: the server sends a fresh nonce, the client answers with its own
nonce and HMAC-SHA256(secret, server nonce + client nonce + channel name),
the server checks that and answers with an HMAC over the nonces the other
way round (with its own label, so that no answer can be reflected). Until the
client's proof checks out, nothing it sent is decoded, not even its channel
name; a peer that fails is told so, refused, and reported on both sides.
Frames may carry pickles, which is why the socket is also owner-only: its
directory must be 0700 and the socket file is created 0600.

**Credits.** The receiver grants ``capacity`` credits when the connection
opens; each frame the sender sends spends one; the receiver returns them as
its consumer takes frames out of its buffer, in one credit frame per half of
the capacity taken. So frames in the socket plus frames in the buffer never
exceed ``capacity``, and ``send()`` waits while it has no credit. A sender
that sends without credit breaks the protocol and is disconnected.

**Ends.** ``FrameSender.end()`` says that the stream is complete; the
receiver's ``receive()`` then returns ``None`` once its buffer is empty. A
connection that closes without that end (the peer crashed, was killed, or
broke the protocol) raises :class:`PeerGoneError` or another
:class:`ChannelError` on the other side, after the frames that did arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streamlet.core.endpoint import close_unix_server
from streamlet.errors import StreamletConfigError, StreamletError

Frame = tuple[int, bytes]
"""``(type, payload)``"""

DEFAULT_CAPACITY: Final = 8
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0  # seconds

HEADER: Final = struct.Struct(">IB")
_COUNT = struct.Struct(">I")

# this protocol's own frame types
_CHALLENGE: Final = 0x80  # server -> client: server nonce
_RESPONSE: Final = 0x81  # client -> server: client nonce, proof, channel name
_ACCEPT: Final = 0x82  # server -> client: proof, max frame size
_REFUSE: Final = 0x83  # server -> client: why, in words
_CREDIT: Final = 0x84  # receiver -> sender: how many more frames it may send
_END: Final = 0x85  # sender -> receiver: the stream is complete

_NONCE = 32
_MAC = 32
_HANDSHAKE_LIMIT = 512  # bytes a frame may have before the peer is authenticated
_MAX_NAME = 255
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating zero
_CLIENT_LABEL = b"streamlet frames v1 client\0"
_SERVER_LABEL = b"streamlet frames v1 server\0"


class ChannelError(StreamletError):
    """A channel between processes failed; the message says which and why."""


class AuthenticationError(ChannelError, PermissionError):
    """A peer did not prove that it knows the job's secret, or refused our proof."""


class FrameTooLargeError(ChannelError, ValueError):
    """A frame over the receiver's ``max_frame_size``, to be sent or announced by a peer."""


class PeerGoneError(ChannelError, ConnectionError):
    """The process at the other end closed the connection without ending the stream."""


class WouldBlock(StreamletError):  # anyio's name for the same thing
    """``send_nowait`` without credit, or ``receive_nowait`` with nothing buffered."""


@dataclass(frozen=True)
class SenderStatistics:
    frames_sent: int
    bytes_sent: int
    credits: int  # frames it may send now
    blocked_sends: int  # sends that had to wait for a credit


@dataclass(frozen=True)
class ReceiverStatistics:
    name: str
    capacity: int
    buffered: int
    max_buffered: int
    frames_received: int
    bytes_received: int
    credits_outstanding: int  # granted and not yet spent by the sender


# -- frames on a stream ----------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader, limit: int, peer: str) -> Frame:
    header = await reader.readexactly(HEADER.size)
    length, kind = HEADER.unpack(header)
    if length > limit:
        raise FrameTooLargeError(
            f"{peer} announced a frame of {length} bytes (type 0x{kind:02x}), over the limit "
            f"of {limit} bytes; disconnected it without reading the frame")
    payload = await reader.readexactly(length) if length else b""
    return kind, payload


def _frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind) + payload


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, label + b"".join(parts), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise StreamletConfigError(
            "a channel's secret must be at least 16 random bytes "
            "(secrets.token_bytes(32)), shared by the processes of one job")


def _check_limits(capacity: int, max_frame_size: int) -> None:
    if capacity < 1:
        raise StreamletConfigError(f"a channel's capacity must be at least 1, got {capacity}")
    if not 1 <= max_frame_size < 2**32:
        raise StreamletConfigError(
            f"max_frame_size must be from 1 to 2**32-1 bytes, got {max_frame_size}")


async def _close(writer: asyncio.StreamWriter, task: asyncio.Task[None] | None = None) -> None:
    """Stop the task reading the connection, if any, and close it."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


# -- the listening side ----------------------------------------------------------------


def _private_directory(directory: Path) -> None:
    """Create ``directory`` 0700, or make sure it already is ours and 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise StreamletConfigError(
            f"the directory of a channel socket must belong to this user and be closed to "
            f"everyone else (0700): {directory} has mode {stat.S_IMODE(info.st_mode):o} and "
            f"owner uid {info.st_uid}. Use a directory of its own, e.g. from "
            "tempfile.mkdtemp()")


class FrameServer:
    """Listens on a Unix socket; each authenticated connection becomes a
    :class:`FrameReceiver`, returned by :meth:`accept` in the order they arrive."""

    def __init__(self, path: Path, secret: bytes, capacity: int, max_frame_size: int,
                 handshake_timeout: float) -> None:
        self.path = path
        self._secret = secret
        self.capacity = capacity
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self._server: asyncio.AbstractServer | None = None
        self._accepted: asyncio.Queue[FrameReceiver | ChannelError] = asyncio.Queue()
        self._connections = 0

    @classmethod
    async def start(cls, path: Path, secret: bytes, *, capacity: int = DEFAULT_CAPACITY,
                    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> FrameServer:
        _check_secret(secret)
        _check_limits(capacity, max_frame_size)
        path = Path(path)
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            raise StreamletConfigError(
                f"a Unix socket path has at most {_MAX_SOCKET_PATH} bytes; {path} has "
                f"{len(os.fsencode(path))}. Use a shorter directory")
        _private_directory(path.parent)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a process that was killed
        server = cls(path, secret, capacity, max_frame_size, handshake_timeout)
        old_umask = os.umask(0o177)  # the socket file is created 0600
        try:
            server._server = await asyncio.start_unix_server(server._connected, path=str(path))
        finally:
            os.umask(old_umask)
        return server

    async def accept(self) -> FrameReceiver:
        """The next authenticated connection. A connection that failed its
        handshake (a wrong secret, a peer that hung up or broke the protocol)
        raises here instead, once; the server keeps listening."""
        item = await self._accepted.get()
        if isinstance(item, ChannelError):
            raise item
        return item

    async def close(self) -> None:
        """Stop listening and remove the socket; receivers already accepted stay open,
        ones not yet accepted are closed."""
        server, self._server = self._server, None
        await close_unix_server(server, self.path)
        while not self._accepted.empty():
            item = self._accepted.get_nowait()
            if isinstance(item, FrameReceiver):
                await item.close()

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        peer = f"connection {self._connections} to {self.path}"
        try:
            async with asyncio.timeout(self.handshake_timeout):
                name = await self._handshake(reader, writer, peer)
        except AuthenticationError as exc:
            with contextlib.suppress(OSError):
                writer.write(_frame(_REFUSE, str(exc).encode()))
            await _close(writer)
            self._accepted.put_nowait(exc)
            return
        except ChannelError as exc:
            await _close(writer)
            self._accepted.put_nowait(exc)
            return
        except TimeoutError:
            await _close(writer)
            self._accepted.put_nowait(ChannelError(
                f"{peer}: no authentication within {self.handshake_timeout} s; closed it"))
            return
        except (asyncio.IncompleteReadError, OSError) as exc:
            await _close(writer)
            self._accepted.put_nowait(PeerGoneError(
                f"{peer}: the peer closed the connection during the handshake "
                f"({type(exc).__name__})"))
            return
        receiver = FrameReceiver(reader, writer, name, self.capacity, self.max_frame_size)
        receiver._start()
        self._accepted.put_nowait(receiver)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         peer: str) -> str:
        server_nonce = secrets.token_bytes(_NONCE)
        writer.write(_frame(_CHALLENGE, server_nonce))
        await writer.drain()
        kind, payload = await _read_frame(reader, _HANDSHAKE_LIMIT, peer)
        if kind != _RESPONSE or len(payload) < _NONCE + _MAC:
            raise AuthenticationError(
                f"{peer}: expected the peer's proof of the job secret, got a frame of type "
                f"0x{kind:02x} and {len(payload)} bytes; refused it, and decoded nothing "
                "it sent")
        client_nonce = payload[:_NONCE]
        proof = payload[_NONCE:_NONCE + _MAC]
        name = payload[_NONCE + _MAC:]
        expected = _mac(self._secret, _CLIENT_LABEL, server_nonce, client_nonce, name)
        if not hmac.compare_digest(proof, expected):
            raise AuthenticationError(
                f"{peer}: the peer does not know this job's secret (its proof did not "
                "verify); refused it, and decoded nothing it sent")
        limit = _COUNT.pack(self.max_frame_size)
        writer.write(_frame(_ACCEPT, _mac(self._secret, _SERVER_LABEL, client_nonce,
                                          server_nonce, name, limit) + limit))
        return name.decode("utf-8", errors="replace")  # only now: it is authenticated


# -- the receiving end -----------------------------------------------------------------


class FrameReceiver:
    """The consumer's end of one connection: a buffer of at most ``capacity`` frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str,
                 capacity: int, max_frame_size: int) -> None:
        self.name = name  # the channel name the sender gave (authenticated)
        self.capacity = capacity
        self.max_frame_size = max_frame_size
        self._reader = reader
        self._writer = writer
        self._peer = f"the sender {name!r}" if name else "the sender"
        self._buffer: deque[Frame] = deque()
        self._outstanding = 0
        # credits go back in halves of the capacity: a credit frame per frame
        # read cost a write here and a wakeup in the sender (~10 ms a worker
        # over W2's 1M events), and half the buffer is slack enough to keep
        # the sender from waiting
        self._grant_every = max(1, capacity // 2)
        self._taken = 0  # frames taken since the last grant
        self._ended = False
        self._error: ChannelError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._frames = 0
        self._bytes = 0
        self._max_buffered = 0

    def _start(self) -> None:
        self._grant(self.capacity)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        reader = self._reader
        buffer = self._buffer
        try:
            while True:
                kind, payload = await _read_frame(reader, self.max_frame_size, self._peer)
                if kind < 0x80:
                    if self._outstanding == 0:
                        raise ChannelError(
                            f"{self._peer} sent a frame without credit (capacity "
                            f"{self.capacity}): it broke the protocol; disconnected it")
                    self._outstanding -= 1
                    buffer.append((kind, payload))
                    self._frames += 1
                    self._bytes += len(payload)
                    self._max_buffered = max(self._max_buffered, len(buffer))
                elif kind == _END:
                    self._ended = True
                    self._writer.close()  # what the sender waits for before it closes
                    self._wake()
                    return
                else:
                    raise ChannelError(
                        f"{self._peer} sent a frame of type 0x{kind:02x}, which a sender "
                        "never sends: it broke the protocol; disconnected it")
                self._wake()
        except ChannelError as exc:
            self._fail(exc)
        except (asyncio.IncompleteReadError, OSError):
            self._fail(PeerGoneError(
                f"{self._peer} vanished mid-stream: the connection closed after "
                f"{self._frames} frames without an end of stream (did its process die?)"))

    def _fail(self, error: ChannelError) -> None:
        self._error = error
        self._writer.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _grant(self, credits: int) -> None:
        if self._ended or self._error is not None or self._writer.is_closing():
            return
        self._outstanding += credits
        self._writer.write(_frame(_CREDIT, _COUNT.pack(credits)))

    def ready(self) -> bool:
        """Whether ``receive_nowait`` would not raise ``WouldBlock``."""
        return bool(self._buffer) or self._ended or self._error is not None

    def receive_nowait(self) -> Frame | None:
        """The next frame; ``None`` once the sender ended the stream."""
        if self._buffer:
            frame = self._buffer.popleft()
            self._taken += 1
            if self._taken >= self._grant_every:
                self._grant(self._taken)
                self._taken = 0
            return frame
        if self._error is not None:
            raise self._error
        if self._ended:
            return None
        raise WouldBlock(f"nothing buffered from {self._peer}")

    async def receive(self) -> Frame | None:
        """The next frame, waiting for one; ``None`` once the sender ended the
        stream; :class:`ChannelError` once the connection failed (after the
        frames that arrived before)."""
        while not self.ready():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.receive_nowait()

    def __aiter__(self) -> FrameReceiver:
        return self

    async def __anext__(self) -> Frame:
        frame = await self.receive()
        if frame is None:
            raise StopAsyncIteration
        return frame

    def statistics(self) -> ReceiverStatistics:
        return ReceiverStatistics(self.name, self.capacity, len(self._buffer),
                                  self._max_buffered, self._frames, self._bytes,
                                  self._outstanding)

    async def close(self) -> None:
        """Close the connection (a sender still sending sees an error); a
        ``receive()`` waiting here raises."""
        await _close(self._writer, self._task)
        if self._error is None and not self._ended:
            self._error = ChannelError(f"the channel from {self._peer} was closed here")
        self._buffer.clear()
        self._wake()


# -- the sending side ------------------------------------------------------------------


async def connect(path: Path, secret: bytes, *, name: str = "",
                  max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                  handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> FrameSender:
    """Connect to the :class:`FrameServer` at ``path`` and authenticate both ways;
    ``name`` (at most 255 bytes of UTF-8) tells the receiver which channel this is."""
    _check_secret(secret)
    _check_limits(1, max_frame_size)
    encoded_name = name.encode()
    if len(encoded_name) > _MAX_NAME:
        raise StreamletConfigError(f"a channel name has at most {_MAX_NAME} bytes of UTF-8, "
                                   f"got {len(encoded_name)}")
    peer = f"the receiver at {path}"
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        raise PeerGoneError(f"cannot connect to {peer}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(handshake_timeout):
            limit, credits = await _client_handshake(reader, writer, secret, encoded_name,
                                                     peer)
    except BaseException as exc:
        await _close(writer)
        if isinstance(exc, ChannelError):
            raise
        if isinstance(exc, TimeoutError):
            raise ChannelError(f"{peer} did not complete the handshake within "
                               f"{handshake_timeout} s") from None
        if isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
            raise PeerGoneError(f"{peer} closed the connection during the handshake "
                                f"({type(exc).__name__})") from None
        raise
    sender = FrameSender(reader, writer, peer, min(max_frame_size, limit))
    sender._credits = credits
    sender._start()
    return sender


async def _client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            secret: bytes, name: bytes, peer: str) -> tuple[int, int]:
    """The receiver's max frame size and its first credits: a sender starts ready to send."""
    kind, server_nonce = await _read_frame(reader, _HANDSHAKE_LIMIT, peer)
    if kind != _CHALLENGE or len(server_nonce) != _NONCE:
        raise ChannelError(f"{peer} did not open the handshake (got a frame of type "
                           f"0x{kind:02x} and {len(server_nonce)} bytes): not a streamlet "
                           "channel, or another version")
    client_nonce = secrets.token_bytes(_NONCE)
    writer.write(_frame(_RESPONSE, client_nonce
                        + _mac(secret, _CLIENT_LABEL, server_nonce, client_nonce, name) + name))
    await writer.drain()
    kind, payload = await _read_frame(reader, _HANDSHAKE_LIMIT, peer)
    if kind == _REFUSE:
        raise AuthenticationError(
            f"{peer} refused this connection: "
            f"{payload.decode('utf-8', errors='replace')[:300]}. Both ends must be given "
            "the same job secret")
    if kind != _ACCEPT or len(payload) != _MAC + _COUNT.size:
        raise ChannelError(f"{peer} answered the handshake with a frame of type 0x{kind:02x} "
                           f"and {len(payload)} bytes: not a streamlet channel")
    proof, limit = payload[:_MAC], payload[_MAC:]
    if not hmac.compare_digest(proof, _mac(secret, _SERVER_LABEL, client_nonce, server_nonce,
                                           name, limit)):
        raise AuthenticationError(f"{peer} does not know this job's secret (its proof did not "
                                  "verify); refused it, and sent it nothing")
    max_frame_size: int = _COUNT.unpack(limit)[0]
    kind, payload = await _read_frame(reader, _COUNT.size, peer)
    if kind != _CREDIT or len(payload) != _COUNT.size:
        raise ChannelError(f"{peer} did not grant credits after the handshake (got a frame "
                           f"of type 0x{kind:02x})")
    credits: int = _COUNT.unpack(payload)[0]
    return max_frame_size, credits


class FrameSender:
    """The producer's end of one connection. One frame per batch: no per-record await."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                 max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size  # the smaller of ours and the receiver's
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._credits = 0
        self._error: ChannelError | None = None
        self._closed = False
        self._ending = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._frames = 0
        self._bytes = 0
        self._blocked = 0

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_credits())

    async def _read_credits(self) -> None:
        try:
            while True:
                kind, payload = await _read_frame(self._reader, _COUNT.size, self._peer)
                if kind != _CREDIT or len(payload) != _COUNT.size:
                    raise ChannelError(f"{self._peer} sent a frame of type 0x{kind:02x}, "
                                       "where only credits come back: it broke the protocol")
                self._credits += _COUNT.unpack(payload)[0]
                self._wake()
        except ChannelError as exc:
            self._fail(exc)
        except (asyncio.IncompleteReadError, OSError):
            if self._ending:
                return  # the receiver read the end and closed: a clean end
            self._fail(PeerGoneError(
                f"{self._peer} closed the connection after {self._frames} frames, before the "
                "end of the stream (did its process die, or stop reading?)"))

    def _fail(self, error: ChannelError) -> None:
        if self._error is None and not self._closed:
            self._error = error
        self._writer.close()
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _check(self, kind: int, payload: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ChannelError(f"the channel to {self._peer} is closed")
        if not 0 <= kind < 0x80:
            raise ChannelError(f"frame type 0x{kind:02x} is reserved for the channel itself; "
                               "use 0x00 to 0x7f")
        if len(payload) > self.max_frame_size:
            raise FrameTooLargeError(
                f"a frame of {len(payload)} bytes is over the limit of {self.max_frame_size} "
                f"bytes for the channel to {self._peer}; send smaller batches, or raise "
                "max_frame_size on both ends")

    def _write(self, kind: int, payload: bytes) -> None:
        self._credits -= 1
        self._writer.write(HEADER.pack(len(payload), kind) + payload)
        self._frames += 1
        self._bytes += len(payload)

    def send_nowait(self, kind: int, payload: bytes) -> None:
        """Send now, or raise ``WouldBlock`` without a credit."""
        self._check(kind, payload)
        if self._credits <= 0:
            raise WouldBlock(f"no credit from {self._peer}")
        self._write(kind, payload)

    async def send(self, kind: int, payload: bytes) -> None:
        """Send one frame, waiting for a credit first if the receiver's buffer is full."""
        self._check(kind, payload)
        if self._credits <= 0:
            self._blocked += 1
            loop = asyncio.get_running_loop()
            while self._credits <= 0:
                waiter = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.remove(waiter)
                self._check(kind, payload)
        self._write(kind, payload)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._fail(PeerGoneError(f"{self._peer} closed the connection after "
                                     f"{self._frames - 1} frames, before the end of the stream"))
            raise self._error or ChannelError(f"the channel to {self._peer} is closed") from None

    def statistics(self) -> SenderStatistics:
        return SenderStatistics(self._frames, self._bytes, self._credits, self._blocked)

    async def end(self) -> None:
        """Tell the receiver that the stream is complete, and close once it has read
        that. (Closing at once could lose the last frames: the receiver's credits,
        written to a socket already closed, fail its connection before it reads them.)"""
        if self._error is not None:
            raise self._error
        if not self._closed and not self._ending:
            self._ending = True
            self._writer.write(_frame(_END))
            task = self._task
            try:
                await self._writer.drain()
                if task is not None:
                    await asyncio.shield(task)  # until the receiver closes its end
            except (ConnectionError, OSError):
                pass
        if self._error is not None:
            raise self._error
        await self.close()

    async def close(self) -> None:
        """Close without ending the stream (the receiver sees an error)."""
        self._closed = True
        await _close(self._writer, self._task)
        self._wake()
