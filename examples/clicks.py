"""Clicks per user: a small but real streamlet job on the embedded default.

It reads a stream of click events, parses them (malformed ones go to a
dead-letter output instead of stopping the job), looks up each user's
country with an async call (eight in flight at once), keeps a running
count and spend per user, and prints the top spenders when the input ends.

Run it with either of:

    python examples/clicks.py
    streamlet run examples/clicks.py:pipeline
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import streamlet as sl

USERS = [f"user-{i:03d}" for i in range(50)]
COUNTRIES = ["de", "fr", "jp", "br", "us"]


def raw_clicks(n: int = 20_000, seed: int = 7) -> Iterator[str]:
    """JSON lines as they might arrive from a queue, a few of them broken."""
    rng = random.Random(seed)
    for i in range(n):
        if i % 5000 == 4999:
            yield "{not json"
            continue
        yield json.dumps({"user": rng.choice(USERS), "ts": 1_700_000_000_000 + i * 10,
                          "cents": rng.randrange(1, 500)})


def parse(line: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(line)
    return event


@sl.operator(concurrency=8, ordered=True)
async def with_country(event: dict[str, Any]) -> dict[str, Any]:
    """Stands in for a lookup against a user service."""
    await asyncio.sleep(0)
    return {**event, "country": COUNTRIES[int(event["user"][-3:]) % len(COUNTRIES)]}


def add(total: tuple[str, str, int, int], click: tuple[str, str, int, int]
        ) -> tuple[str, str, int, int]:
    return (total[0], total[1], total[2] + click[2], total[3] + click[3])


latest: dict[str, tuple[str, str, int, int]] = {}
broken: list[sl.DeadLetter] = []


def remember(total: tuple[str, str, int, int]) -> None:
    latest[total[0]] = total


pipeline = sl.Pipeline("clicks")
clicks = pipeline.from_iterable(list(raw_clicks()), name="clicks")
events = clicks.map(parse, name="parse", on_error="dead_letter")
events.dead_letters().sink(broken.append, name="broken-lines")
(events
    .map(with_country)
    .map(lambda e: (e["user"], e["country"], 1, e["cents"]), name="to-tuple")
    .key_by(lambda t: t[0], name="by-user")
    .reduce(add, name="totals")
    .sink(remember, name="latest-totals"))


def main() -> None:
    pipeline.run()
    top = sorted(latest.values(), key=lambda t: -t[3])[:5]
    print(f"{sum(t[2] for t in latest.values())} clicks from {len(latest)} users; "
          f"{len(broken)} malformed lines sent to the dead-letter output")
    for user, country, count, cents in top:
        print(f"  {user} ({country}): {count} clicks, {cents / 100:.2f} spent")


if __name__ == "__main__":
    main()
