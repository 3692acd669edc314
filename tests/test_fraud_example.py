"""examples/fraud_alerts.py, the sidecar docs/kafka.md shows, run as a user
runs it: ``streamlet run`` in its own process against the real broker, fed
payments, read back from its alert and dead-letter topics, stopped with
SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from kafka_io import consume, produce

ROOT = Path(__file__).resolve().parent.parent

PAYMENTS = [  # (timestamp ms, value)
    (1_000, {"card": "c-1", "amount": 4_000, "country": "DE"}),
    (2_000, {"card": "c-1", "amount": 4_000, "country": "DE"}),
    (3_000, {"card": "c-2", "amount": 20, "country": "DE"}),
    (4_000, {"card": "c-1", "amount": 4_000, "country": "DE"}),  # 12,000 in minute 0
    (65_000, {"card": "c-2", "amount": 35, "country": "FR"}),  # DE -> FR in 62 s
    (70_000, {"card": "c-3", "amount": 9_000, "country": "NL"}),
    (80_000, b"{not json"),
    (90_000, {"card": "c-9", "amount": -5, "country": "DE"}),  # not a payment
    (200_000, {"card": "c-3", "amount": 10, "country": "NL"}),  # moves event time on
]


async def test_the_fraud_alert_sidecar_alerts_once_and_stops_cleanly(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    payments, alerts, dead = await kafka_topic(), await kafka_topic(), await kafka_topic()
    await produce(kafka_bootstrap, payments,
                  [v if isinstance(v, bytes) else orjson.dumps(v) for _, v in PAYMENTS],
                  timestamps=[ts for ts, _ in PAYMENTS])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "PAYMENTS_TOPIC": payments, "ALERTS_TOPIC": alerts, "DEAD_LETTER_TOPIC": dead,
           "STATE_DIR": str(tmp_path), "CHECKPOINT_INTERVAL_MS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamlet.cli", "run", "examples/fraud_alerts.py:pipeline",
        "--health-port", "0", "--health-host", "127.0.0.1",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        found = [orjson.loads(r.value) for r in await consume(kafka_bootstrap, alerts, 2)]
        letters = await consume(kafka_bootstrap, dead, 2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = stderr.decode()
    assert proc.returncode == 0, err
    assert sorted(found, key=lambda a: a["alert"]) == [
        {"alert": "country", "card": "c-2", "at": 65_000, "countries": ["DE", "FR"]},
        {"alert": "spend", "card": "c-1", "at": 0, "amount": 12_000},
    ]
    headers = sorted((dict(r.headers)["streamlet.offset"], r.value) for r in letters)
    assert headers == [(b"6", b"{not json"),
                       (b"7", orjson.dumps(PAYMENTS[7][1]))]
    assert b"validate" in [dict(r.headers).get("streamlet.operator") for r in letters]
    # the log says what it reads, where it checkpoints, and where it answers probes
    assert f"reads ['{payments}'] from {kafka_bootstrap}" in err
    assert f"checkpoints every 200 ms to sqlite:///{tmp_path}/checkpoints.db" in err
    assert re.search(r"health endpoint on http://127\.0\.0\.1:\d+", err)
    assert "job 'fraud-alerts' stopped on SIGTERM" in err
