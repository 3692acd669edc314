"""A fraud-alert sidecar: payments in from Kafka, alerts out to Kafka, exactly once.

    KAFKA_BOOTSTRAP=localhost:9092 streamlet run examples/fraud_alerts.py:pipeline \\
        --health-port 8080

Reads JSON payments such as ``{"card": "c-17", "amount": 120.5, "country":
"DE"}`` from ``payments`` (event time: each record's Kafka timestamp) and
writes JSON alerts to ``alerts``, each exactly once:

- ``"spend"``: a card spent more than ``SPEND_LIMIT`` in one minute;
- ``"country"``: a card paid from two countries within ten minutes.

Payments that are not JSON go to ``payments-dead`` with headers saying where
they were read and why they failed; payments that are JSON but not a payment
(no card, an amount that is not a positive number) go there as well, from
the ``validate`` operator. Checkpoints go to ``$STATE_DIR/checkpoints.db``
every ten seconds (``$CHECKPOINT_INTERVAL_MS``), and alerts become visible
to ``read_committed`` consumers as each checkpoint completes. Stopped
(SIGTERM, Ctrl-C) or killed, the job resumes where its last checkpoint was.
Topic names and the state directory come from the environment, so one file
serves every deployment.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import streamlet as sl

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
PAYMENTS = os.environ.get("PAYMENTS_TOPIC", "payments")
ALERTS = os.environ.get("ALERTS_TOPIC", "alerts")
DEAD_LETTERS = os.environ.get("DEAD_LETTER_TOPIC", "payments-dead")
STATE_DIR = os.environ.get("STATE_DIR", "state")
CHECKPOINT_EVERY = timedelta(milliseconds=int(os.environ.get("CHECKPOINT_INTERVAL_MS", "10000")))
SPEND_LIMIT = 10_000
HOP_WINDOW_MS = 10 * 60 * 1000


def validate(payment: Any) -> dict[str, Any]:
    """A payment, or an error that sends the record to the dead letters."""
    if not isinstance(payment, dict) or not isinstance(payment.get("card"), str):
        raise ValueError("a payment is an object with a 'card' string")
    amount = payment.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise ValueError(f"amount {amount!r} is not a positive number")
    if not isinstance(payment.get("country"), str):
        raise ValueError("a payment has a 'country' string")
    return payment


class CountryHop(sl.KeyedProcessFunction):
    """Per card: the country and time of its latest payment."""

    last = sl.ValueState("last", ttl=timedelta(hours=1))

    def process(self, payment: dict[str, Any], ctx: sl.Context) -> Any:
        last = self.last.value()
        now = ctx.timestamp
        if last is not None:
            country, at = last
            if country != payment["country"] and abs(now - at) <= HOP_WINDOW_MS:
                yield {"alert": "country", "card": ctx.key, "at": now,
                       "countries": [country, payment["country"]]}
        if last is None or now >= last[1]:
            self.last.update((payment["country"], now))


pipeline = sl.Pipeline("fraud-alerts", checkpointing=sl.Checkpointing(
    interval=CHECKPOINT_EVERY, storage=f"sqlite:///{STATE_DIR}/checkpoints.db"))

payments = (pipeline
            .from_kafka(PAYMENTS, bootstrap_servers=BOOTSTRAP, group_id="fraud-alerts",
                        dead_letter_topic=DEAD_LETTERS)
            .with_watermarks(sl.WatermarkStrategy.bounded_out_of_orderness(
                timedelta(seconds=5)).with_idleness(timedelta(seconds=30)))
            .map(validate, on_error="dead_letter", name="validate"))
payments.dead_letters().to_kafka(DEAD_LETTERS, bootstrap_servers=BOOTSTRAP,
                                 name="rejected")
by_card = payments.key_by(lambda p: p["card"], name="by_card")

high_spend = (by_card
              .window(sl.windows.Tumbling(timedelta(minutes=1)))
              .aggregate(sl.agg.sum("amount"), name="spend_per_minute")
              .filter(lambda r: r.value > SPEND_LIMIT)
              .map(lambda r: {"alert": "spend", "card": r.key, "at": r.window.start,
                              "amount": r.value}))
country_hops = by_card.process(CountryHop(), name="country_hops")

(high_spend.union(country_hops)
 .to_kafka(ALERTS, bootstrap_servers=BOOTSTRAP, key=lambda a: a["card"],
           delivery="exactly-once", name="alerts"))
