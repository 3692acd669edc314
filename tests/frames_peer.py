"""The other process in tests/test_cluster_frames.py.

    python tests/frames_peer.py MODE SOCKET [N]

The job secret comes as hex in ``STREAMLET_TEST_SECRET``. The peer says what it
did on stdout, one flushed line at a time, which is what the test waits on
(never on time). Modes:

- ``send N``: connect as channel ``$STREAMLET_TEST_NAME``, send ``elements(N)``, end.
- ``slow N``: send N small frames; before a send that has no credit print
  ``blocked i``; after each send print ``sent i blocked_sends=b``; then end.
- ``wrong``: connect (the test gives a wrong secret); print the refusal.
- ``oversize``: try a frame over the receiver's limit, send one at the limit,
  then announce a 2 GiB frame by hand, and send until the channel fails.
- ``forever``: send batches until killed.
- ``serve``: listen at SOCKET, accept one sender, print ``accepted``, read
  nothing, wait until killed.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
from pathlib import Path
from typing import Any

from streamlet.cluster import codec, frames
from streamlet.core.batch import Batch
from streamlet.core.control import END_OF_INPUT, Barrier, Watermark


def elements(n: int) -> list[Any]:
    """Batches (plain data and other objects) with control elements between them."""
    out: list[Any] = []
    for i in range(n):
        size = 1 + i % 50
        values: list[Any] = [{"i": i, "j": j, "pair": (j, str(j)), "list": [j]}
                             for j in range(size)]
        if i % 7 == 3:
            values[0] = datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i)
        out.append(Batch(values, [("k", j % 3) for j in range(size)],
                         list(range(i, i + size)), ("topic", i % 4), None))
        if i % 10 == 9:
            out.append(Watermark(i))
        if i % 25 == 24:
            out.append(Barrier(i // 25 + 1))
    out.append(END_OF_INPUT)
    return out


def say(line: str) -> None:
    print(line, flush=True)


async def main(mode: str, path: Path, n: int) -> int:
    secret = bytes.fromhex(os.environ["STREAMLET_TEST_SECRET"])
    if mode == "serve":
        server = await frames.FrameServer.start(path, secret, capacity=2)
        say("ready")
        receiver = await server.accept()
        say("accepted")
        await asyncio.Event().wait()  # until killed
        await receiver.close()
        return 0
    try:
        sender = await frames.connect(path, secret, name=os.environ.get("STREAMLET_TEST_NAME", ""))
    except frames.AuthenticationError as exc:
        say(f"refused: {exc}")
        return 3
    if mode == "send":
        for element in elements(n):
            await sender.send(*codec.encode(element))
        await sender.end()
        say("done")
    elif mode == "slow":
        for i in range(n):
            try:
                sender.send_nowait(1, b"%d" % i)
            except frames.WouldBlock:
                say(f"blocked {i}")
                await sender.send(1, b"%d" % i)
            say(f"sent {i} blocked_sends={sender.statistics().blocked_sends}")
        await sender.end()
        say("done")
    elif mode == "oversize":
        try:
            await sender.send(1, b"x" * (sender.max_frame_size + 1))
        except frames.FrameTooLargeError as exc:
            say(f"local: {exc}")
        await sender.send(1, b"y" * sender.max_frame_size)
        sender._writer.write(frames.HEADER.pack(2**31, 1))  # a peer that lies about the size
        try:
            while True:
                await sender.send(1, b"z")
        except frames.ChannelError as exc:
            say(f"gone: {exc}")
    elif mode == "forever":
        batch = Batch([{"user": "u1", "amount": 1.5}] * 100)
        i = 0
        while True:
            await sender.send(*codec.encode(batch))
            i += 1
            if i % 10 == 0:
                say(f"sent {i}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], Path(sys.argv[2]),
                              int(sys.argv[3]) if len(sys.argv) > 3 else 0)))
