"""``make bench``: throughput of producer and monitoring flow vs. baselines in the same run.

Every number is measured here, on this machine, against the embedded broker;
ratios compare against plain confluent-kafka loops run in the same process
on the same data, so machine noise affects both sides alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from common.progress import Progress
from flows import analytics, monitoring
from flows.runtime.flow import Flow
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings
from sources.broker import EmbeddedBroker
from sources.generators import GENERATORS
from sources.producer import PRODUCER_CONFIG, ProduceRequest, produce
from sources.target import KafkaTarget
from sources.topics import TopicSpec

PARTITIONS = 16
START = datetime(2024, 5, 1, tzinfo=UTC)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _produce_generated(target: KafkaTarget, kind: str, topic: str, count: int) -> float:
    generator = GENERATORS[kind](seed=1, start=START)
    request = ProduceRequest(topic, count=count)
    return _timed(lambda: produce(generator, target, request, Progress(kind, count)))


def _produce_raw_baseline(target: KafkaTarget, kind: str, topic: str, count: int) -> float:
    """Plain confluent-kafka producing pre-encoded messages: the ceiling for produce."""
    generator = GENERATORS[kind](seed=1, start=START)
    payloads = [
        (generator.key_of(e), json.dumps(e).encode()) for e in islice(generator.events(), count)
    ]
    producer = Producer({**target.client_config(), **PRODUCER_CONFIG})

    def send() -> None:
        for key, value in payloads:
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

    return _timed(send)


def _consume_loop(target: KafkaTarget, topic: str, count: int, aggregate: bool) -> float:
    """Plain consume loop; with ``aggregate``, json.loads + dict per (service, minute)."""
    consumer = Consumer({**target.client_config(), "group.id": "bench"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    def run() -> None:
        seen = 0
        while seen < count:
            messages = consumer.consume(min(10_000, count - seen), 1.0)  # no wait at the end
            seen += len(messages)
            if aggregate:
                for message in messages:
                    event = json.loads(message.value())
                    cell = sums[(event["service"], event["ts"][:16])]
                    cell[0] += 1
                    cell[1] += event["latency_ms"]

    elapsed = _timed(run)
    consumer.close()
    return elapsed


def _flow(flow: Flow, target: KafkaTarget, topic: str, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        settings = FlowSettings(
            target=target, topic=topic, out=Path(out), bounded=True, workers=workers
        )
        return _timed(lambda: run_dataflow(flow.build(settings), workers))


def _rate_accuracy(target: KafkaTarget, topic: str, rate: float, seconds: float) -> float:
    generator = GENERATORS["monitoring"](seed=2, start=START, events_per_second=rate)
    request = ProduceRequest(topic, duration_s=seconds, rate=rate)
    report = produce(generator, target, request, Progress("rate", None))
    return report.events_per_s / rate


def main() -> None:
    """Run every benchmark and print events/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000)
    events = parser.parse_args().events
    names = ["mon", "mon-raw", "ana", "ana-raw", "rate"]
    topics = [TopicSpec(name, PARTITIONS) for name in names]
    results: list[tuple[str, float, str]] = []
    with EmbeddedBroker(topics=topics) as bootstrap:
        target = KafkaTarget(bootstrap)
        for kind, topic in (("monitoring", "mon"), ("analytics", "ana")):
            ours = events / _produce_generated(target, kind, topic, events)
            raw = events / _produce_raw_baseline(target, kind, f"{topic}-raw", events)
            results.append(
                (f"produce {kind} (generate+encode+send)", ours, f"{ours / raw:.2f}x raw")
            )
            results.append(("  baseline: raw confluent-kafka produce", raw, ""))
        plain = events / _consume_loop(target, "mon", events, aggregate=False)
        dict_agg = events / _consume_loop(target, "mon", events, aggregate=True)
        for flow, topic in ((monitoring.FLOW, "mon"), (analytics.FLOW, "ana")):
            for workers in (1, 2):
                rate = events / _flow(flow, target, topic, workers)
                name = f"{flow.name} flow, {workers} worker thread(s)"
                results.append((name, rate, f"{rate / dict_agg:.2f}x dict loop"))
        results.append(("  baseline: consume + json.loads + dict agg", dict_agg, ""))
        results.append(("  baseline: consume only", plain, ""))
        accuracy = _rate_accuracy(target, "rate", 20_000.0, 3.0)
        results.append(
            (
                "produce --rate 20000 for 3s (achieved/requested)",
                accuracy * 20_000,
                f"{accuracy:.3f}",
            )
        )
    print(f"\n{'benchmark':<52}{'events/s':>12}  ratio")
    for name, per_second, ratio in results:
        print(f"{name:<52}{per_second:>12,.0f}  {ratio}")


if __name__ == "__main__":
    main()
