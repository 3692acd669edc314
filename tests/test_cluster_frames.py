"""The framed channel between processes, over real Unix sockets, with a real second process.

The other process is tests/frames_peer.py; the test waits on the lines it prints,
never on time. Timeouts here only guard against a hang (then the test fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from frames_peer import elements

from streamlet.cluster import codec, frames
from streamlet.cluster.frames import (
    AuthenticationError,
    ChannelError,
    FrameServer,
    FrameTooLargeError,
    PeerGoneError,
    WouldBlock,
)
from streamlet.core.batch import Batch
from streamlet.errors import StreamletConfigError

PEER = Path(__file__).with_name("frames_peer.py")
GUARD_S = 30.0  # a hang fails the test after this long; nothing waits for it otherwise
SECRET = secrets.token_bytes(32)


class Peer:
    """tests/frames_peer.py in a subprocess, read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, mode: str, path: Path, n: int = 0, secret: bytes = SECRET,
                    name: str = "") -> Peer:
        env = {**os.environ, "STREAMLET_TEST_SECRET": secret.hex(), "STREAMLET_TEST_NAME": name}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PEER), mode, str(path), str(n), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), GUARD_S)
        assert raw, f"the peer ended without a line (exit code {await self.exit_code()})"
        return raw.decode().rstrip("\n")

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), GUARD_S)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()  # SIGKILL
        await self.exit_code()


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A fresh 0700 directory with a short path (a socket path has ~100 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="sl-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        await peer.kill()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def guarded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, GUARD_S)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is Batch:
        return all(getattr(a, f) == getattr(b, f) and
                   [type(x) for x in getattr(a, f) or ()] == [type(x) for x in getattr(b, f) or ()]
                   for f in ("values", "keys", "timestamps", "offsets")) and a.split == b.split
    return repr(a) == repr(b)


async def test_many_batches_arrive_in_order_on_each_of_two_channels(
        sockets: Path, peers: list[Peer]) -> None:
    path = sockets / "in.sock"
    server = await FrameServer.start(path, SECRET, capacity=4)
    try:
        assert mode(path) == 0o600 and mode(sockets) == 0o700
        n = 300
        peers += [await Peer.start("send", path, n, name=name) for name in ("a", "b")]
        receivers = [await guarded(server.accept()) for _ in range(2)]
        assert sorted(r.name for r in receivers) == ["a", "b"]

        async def drain(receiver: frames.FrameReceiver) -> list[Any]:
            return [codec.decode(*frame) async for frame in receiver]

        got = await guarded(asyncio.gather(*(drain(r) for r in receivers)))
        expected = elements(n)
        kinds = {codec.encode(e)[0] for e in expected}
        assert {codec.BATCH, codec.WATERMARK, codec.BARRIER,
                codec.END} <= kinds
        for received in got:
            assert len(received) == len(expected)
            assert all(same(a, b) for a, b in zip(received, expected, strict=True))
        for receiver in receivers:
            stats = receiver.statistics()
            assert stats.frames_received == len(expected) and stats.max_buffered <= 4
            await receiver.close()
        assert [await peer.line() for peer in peers] == ["done", "done"]
        assert [await peer.exit_code() for peer in peers] == [0, 0]
    finally:
        await server.close()
    assert not path.exists()


@contextlib.asynccontextmanager
async def held_at_capacity(sockets: Path, peers: list[Peer], capacity: int, n: int
                           ) -> AsyncIterator[tuple[Peer, frames.FrameReceiver]]:
    """A peer sending ``n`` frames to a receiver of ``capacity``, once it has
    spent its credits and found none (nothing was taken yet)."""
    server = await FrameServer.start(sockets / "s.sock", SECRET, capacity=capacity)
    try:
        peer = await Peer.start("slow", sockets / "s.sock", n)
        peers.append(peer)
        receiver = await guarded(server.accept())
        for i in range(capacity):
            assert await peer.line() == f"sent {i} blocked_sends=0"
        assert await peer.line() == f"blocked {capacity}"
        yield peer, receiver
    finally:
        await server.close()


async def test_a_slow_consumer_holds_the_sender_at_capacity(
        sockets: Path, peers: list[Peer]) -> None:
    capacity, n = 3, 12
    async with held_at_capacity(sockets, peers, capacity, n) as (peer, receiver):
        # at capacity 3 (half of it rounds down to 1) each frame taken returns one
        # credit, which lets exactly one more send through
        for i in range(capacity, n):
            frame = await guarded(receiver.receive())
            assert frame == (1, b"%d" % (i - capacity))
            stats = receiver.statistics()
            assert stats.buffered + stats.credits_outstanding <= capacity
            assert stats.max_buffered <= capacity
            assert await peer.line() == f"sent {i} blocked_sends={i - capacity + 1}"
            if i + 1 < n:
                assert await peer.line() == f"blocked {i + 1}"
        assert await peer.line() == "done"  # the end was read: every frame is buffered now
        stats = receiver.statistics()
        assert stats.buffered == capacity == stats.max_buffered
        rest = [await guarded(receiver.receive()) for _ in range(capacity)]
        assert rest == [(1, b"%d" % i) for i in range(n - capacity, n)]
        assert await guarded(receiver.receive()) is None
        assert receiver.statistics().frames_received == n
        with pytest.raises(StopAsyncIteration):
            await receiver.__anext__()
        await receiver.close()


async def test_credits_go_back_in_halves_of_the_capacity(
        sockets: Path, peers: list[Peer]) -> None:
    capacity, n = 4, 10
    async with held_at_capacity(sockets, peers, capacity, n) as (peer, receiver):
        sent = capacity
        for taken in range(n):
            assert await guarded(receiver.receive()) == (1, b"%d" % taken)
            stats = receiver.statistics()
            assert stats.buffered + stats.credits_outstanding <= capacity
            if taken % 2 == 0:  # one frame taken: no credit back yet
                assert stats.credits_outstanding == 0
                continue
            if sent == n:
                continue
            assert stats.credits_outstanding == 2  # two taken: two credits, in one frame
            for i in (sent, sent + 1):
                assert await peer.line() == f"sent {i} blocked_sends={i // 2 - 1}"
            sent += 2
            assert await peer.line() == (f"blocked {sent}" if sent < n else "done")
        assert await guarded(receiver.receive()) is None
        await receiver.close()


async def test_a_wrong_secret_is_refused_on_both_sides(sockets: Path, peers: list[Peer]) -> None:
    path = sockets / "s.sock"
    server = await FrameServer.start(path, SECRET)
    try:
        peer = await Peer.start("wrong", path, secret=secrets.token_bytes(32))
        peers.append(peer)
        with pytest.raises(AuthenticationError, match=r"does not know this job's secret .*"
                                                      r"refused it, and decoded nothing"):
            await guarded(server.accept())
        line = await peer.line()
        assert line.startswith(f"refused: the receiver at {path} refused this connection: ")
        assert "does not know this job's secret" in line
        assert line.endswith("Both ends must be given the same job secret")
        assert await peer.exit_code() == 3
        # the server goes on listening for the right peers
        good = await Peer.start("send", path, 3)
        peers.append(good)
        receiver = await guarded(server.accept())
        assert len([f async for f in receiver]) == len(elements(3))
        await receiver.close()
    finally:
        await server.close()


async def test_frames_over_the_limit_are_refused_and_a_peer_announcing_one_is_cut_off(
        sockets: Path, peers: list[Peer]) -> None:
    server = await FrameServer.start(sockets / "s.sock", SECRET, max_frame_size=1000)
    try:
        peer = await Peer.start("oversize", sockets / "s.sock")
        peers.append(peer)
        receiver = await guarded(server.accept())
        line = await peer.line()
        assert line.startswith("local: a frame of 1001 bytes is over the limit of 1000 bytes")
        assert await guarded(receiver.receive()) == (1, b"y" * 1000)
        with pytest.raises(FrameTooLargeError, match=r"announced a frame of 2147483648 bytes "
                                                     r"\(type 0x01\), over the limit of 1000 "
                                                     r"bytes; disconnected it"):
            await guarded(receiver.receive())
        assert (await peer.line()).startswith(f"gone: the receiver at {sockets / 's.sock'} "
                                              "closed the connection after")
        assert await peer.exit_code() == 0
        await receiver.close()
    finally:
        await server.close()


async def test_a_sender_killed_mid_stream_is_an_error_for_the_receiver(
        sockets: Path, peers: list[Peer]) -> None:
    server = await FrameServer.start(sockets / "s.sock", SECRET, capacity=4)
    try:
        peer = await Peer.start("forever", sockets / "s.sock")
        peers.append(peer)
        receiver = await guarded(server.accept())
        for _ in range(25):  # mid-stream: it sends for as long as it lives
            assert await guarded(receiver.receive()) is not None
        await peer.kill()
        with pytest.raises(PeerGoneError, match=r"the sender vanished mid-stream: the connection"
                                                r" closed after \d+ frames without an end"):
            while True:
                assert await guarded(receiver.receive()) is not None
        await receiver.close()
    finally:
        await server.close()


async def test_a_receiver_killed_mid_stream_is_an_error_for_the_blocked_sender(
        sockets: Path, peers: list[Peer]) -> None:
    path = sockets / "r.sock"
    peer = await Peer.start("serve", path)
    peers.append(peer)
    assert await peer.line() == "ready"
    sender = await guarded(frames.connect(path, SECRET, name="x"))
    assert await peer.line() == "accepted"
    sent = 0
    with pytest.raises(WouldBlock):
        while True:
            sender.send_nowait(*codec.encode(Batch([sent])))
            sent += 1
    assert sent == 2  # the receiver's capacity
    blocked = asyncio.ensure_future(sender.send(*codec.encode(Batch([sent]))))
    await asyncio.sleep(0)  # let it reach its wait (not a timing: one loop turn)
    assert not blocked.done() and sender.statistics().blocked_sends == 1
    await peer.kill()
    with pytest.raises(PeerGoneError, match=rf"the receiver at {path} closed the connection "
                                            r"after 2 frames, before the end"):
        await guarded(blocked)
    with pytest.raises(PeerGoneError):
        await sender.send(1, b"")
    await sender.close()


# -- in one process: the handshake against peers that break it -----------------------------


async def raw_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    length, kind = frames.HEADER.unpack(await reader.readexactly(5))
    return kind, await reader.readexactly(length)


@pytest.mark.parametrize(("first", "message"), [
    (frames.HEADER.pack(4, codec.BATCH) + b"\x80\x04N.", "expected the peer's proof "
     r"of the job secret, got a frame of type 0x02 and 4 bytes; refused it, and decoded nothing"),
    (frames.HEADER.pack(2**31, 0x81), "announced a frame of 2147483648 bytes"),
    (frames.HEADER.pack(64, 0x81) + bytes(64), "does not know this job's secret"),
])
async def test_nothing_is_decoded_before_the_peer_is_authenticated(
        sockets: Path, first: bytes, message: str) -> None:
    server = await FrameServer.start(sockets / "s.sock", SECRET)
    try:
        reader, writer = await asyncio.open_unix_connection(str(sockets / "s.sock"))
        kind, nonce = await guarded(raw_frame(reader))
        assert kind == 0x80 and len(nonce) == 32
        writer.write(first)
        with pytest.raises(ChannelError, match=message):
            await guarded(server.accept())
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    finally:
        await server.close()


async def test_the_client_refuses_a_server_that_does_not_know_the_secret(sockets: Path) -> None:
    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frames.HEADER.pack(32, 0x80) + bytes(32))
        await raw_frame(reader)
        writer.write(frames.HEADER.pack(36, 0x82) + bytes(32) + (1000).to_bytes(4, "big"))
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(impostor, path=str(sockets / "x.sock"))
    try:
        with pytest.raises(AuthenticationError, match=r"does not know this job's secret \(its "
                                                      r"proof did not verify\); refused it, "
                                                      r"and sent it nothing"):
            await guarded(frames.connect(sockets / "x.sock", SECRET))
    finally:
        server.close()
        await server.wait_closed()


async def test_settings_are_checked(sockets: Path) -> None:
    with pytest.raises(StreamletConfigError, match="at least 16 random bytes"):
        await FrameServer.start(sockets / "s.sock", b"short")
    with pytest.raises(StreamletConfigError, match="capacity must be at least 1"):
        await FrameServer.start(sockets / "s.sock", SECRET, capacity=0)
    with pytest.raises(StreamletConfigError, match="at most 107 bytes"):
        await FrameServer.start(sockets / ("x" * 120), SECRET)
    open_dir = sockets / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    with pytest.raises(StreamletConfigError, match="has mode 755"):
        await FrameServer.start(open_dir / "s.sock", SECRET)
    with pytest.raises(PeerGoneError, match="cannot connect to the receiver at"):
        await frames.connect(sockets / "nobody.sock", SECRET)


async def test_closing_a_receiver_wakes_a_waiting_receive_and_ends_the_senders_stream(
        sockets: Path) -> None:
    server = await FrameServer.start(sockets / "s.sock", SECRET, capacity=1)
    try:
        sender = await guarded(frames.connect(sockets / "s.sock", SECRET))
        receiver = await guarded(server.accept())
        waiting = asyncio.ensure_future(receiver.receive())
        await asyncio.sleep(0)  # one loop turn: it is waiting now
        assert not waiting.done()
        await receiver.close()
        with pytest.raises(ChannelError, match="the channel from the sender was closed here"):
            await guarded(waiting)
        with pytest.raises(PeerGoneError, match=r"closed the connection after \d+ frames"):
            while True:
                await guarded(sender.send(1, b"x"))
        await sender.close()
    finally:
        await server.close()
