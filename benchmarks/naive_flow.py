"""The flow bytewax's documentation suggests, as a baseline for ``make bench``.

``KafkaSource`` → ``json.loads`` per event → ``fold_window`` with an
``EventClock`` (10 s tumbling windows), counting events and summing latency per
service. Run with ``python -m bytewax.run benchmarks.naive_flow:flow``; reads
the topic named by ``BENCH_TOPIC`` on ``BENCH_BROKERS`` from the start to its end.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.testing import TestingSink

Event = dict[str, Any]
Sums = tuple[int, float]


def _event(message: KafkaSourceMessage[bytes, bytes]) -> Event:
    return json.loads(message.value)  # type: ignore[no-any-return]


def _event_time(event: Event) -> datetime:
    return datetime.fromisoformat(event["ts"])


def _add(sums: Sums, event: Event) -> Sums:
    return sums[0] + 1, sums[1] + event["latency_ms"]


def _merge(left: Sums, right: Sums) -> Sums:
    return left[0] + right[0], left[1] + right[1]


def build(brokers: str, topic: str) -> Dataflow:
    """The naive dataflow over ``topic``; its windows are collected in a list."""
    flow = Dataflow("naive")
    messages = op.input("kafka", flow, KafkaSource([brokers], [topic], tail=False))
    events = op.map("json", messages, _event)
    keyed = op.key_on("service", events, lambda event: str(event["service"]))
    clock = EventClock(_event_time, wait_for_system_duration=timedelta(seconds=5))
    windower = TumblingWindower(timedelta(seconds=10), align_to=datetime(2024, 1, 1, tzinfo=UTC))
    windows = fold_window("windows", keyed, clock, windower, lambda: (0, 0.0), _add, _merge)
    op.output("out", windows.down, TestingSink([]))
    return flow


flow = build(os.environ.get("BENCH_BROKERS", ""), os.environ.get("BENCH_TOPIC", ""))
