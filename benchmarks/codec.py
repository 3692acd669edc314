"""What a batch costs to cross between processes.

    python -m benchmarks.codec [--batches N] [--repeat R]

1. The codec alone: encode + decode of one batch of 1024 records, per record,
   best of ``--repeat`` timings, for dicts like ``{"user": "u17", "amount":
   12.5, "ts": 1700000000000}`` and for ``(str, int)`` tuples.
2. The channel: ``--batches`` batches of 1024 such dicts from one process to
   another (spawned), each encoded by the sender and decoded by the receiver,
   over ``streamlet.cluster.frames`` (Unix socket, HMAC handshake, credits);
   records per second at the receiver, best of ``--repeat`` runs. ``--loop
   uvloop`` runs both ends on uvloop.

A benchmark, not a test: it prints numbers and asserts only that the records
arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from streamlet.cluster import codec, frames
from streamlet.core.batch import Batch

N = 1024


def dicts() -> list[Any]:
    return [{"user": f"u{i % 100}", "amount": 12.5 + i, "ts": 1_700_000_000_000 + i}
            for i in range(N)]


def tuples() -> list[Any]:
    return [(f"u{i % 100}", i) for i in range(N)]


def per_record_ns(fn: Any, repeat: int, loops: int = 200) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / loops / N * 1e9


def codec_numbers(repeat: int) -> None:
    for name, values in (("dicts", dicts()), ("(str, int) tuples", tuples())):
        batch = Batch(values)
        kind, payload = codec.encode(batch)
        assert kind == codec.BATCH
        enc = per_record_ns(lambda b=batch: codec.encode(b), repeat)
        dec = per_record_ns(lambda k=kind, p=payload: codec.decode(k, p), repeat)
        print(f"codec, {name}: encode {enc:.0f} + decode {dec:.0f} = {enc + dec:.0f} ns/record "
              f"({len(payload) / N:.1f} bytes/record)")


def _run(main: Any, loop: str) -> Any:
    if loop == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)


def _send(path: str, secret: bytes, batches: int, loop: str) -> None:
    async def run() -> None:
        batch = Batch(dicts())
        encode = codec.encode
        sender = await frames.connect(Path(path), secret)
        for _ in range(batches):
            await sender.send(*encode(batch))
        await sender.end()
    _run(run(), loop)


async def _receive(batches: int, capacity: int, loop: str) -> float:
    secret = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="streamlet-bench-") as tmp:
        path = Path(tmp) / "s" / "bench.sock"
        server = await frames.FrameServer.start(path, secret, capacity=capacity)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_send, args=(str(path), secret, batches, loop))
        child.start()
        try:
            receiver = await server.accept()
            start = time.perf_counter()
            records = 0
            while (frame := await receiver.receive()) is not None:
                element = codec.decode(*frame)
                assert type(element) is Batch
                records += len(element.values)
            elapsed = time.perf_counter() - start
            assert records == batches * N, records
            await receiver.close()
        finally:
            await server.close()
            child.join()
    return records / elapsed


def channel_numbers(batches: int, repeat: int, capacity: int, loop: str) -> None:
    best = max(_run(_receive(batches, capacity, loop), loop) for _ in range(repeat))
    print(f"channel ({loop}): {batches} batches of {N} dicts, capacity {capacity}, "
          "process to process "
          f"(encode + frames + decode): {best:,.0f} records/s "
          f"({1e9 / best:.0f} ns/record)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    codec_numbers(args.repeat)
    channel_numbers(args.batches, args.repeat, args.capacity, args.loop)


if __name__ == "__main__":
    main()
