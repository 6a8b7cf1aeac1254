"""``make bench``, part two: each flow against the consume ceiling of its own topic.

For each scenario one embedded broker holds the topic; a plain confluent-kafka
consume loop reads it once (the ceiling, measured in this run), then the
eventlake command runs over the same topic as an OS process, start-up
included. Printed: events/s of both and their ratio. Scenarios:

- steady state: small monitoring events, 10 s windows with count, mean and
  three percentiles; and the same with ``--recovery-dir`` and 10 s snapshots
  (its ratio is against the run without);
- backfill: a year of sensor readings (ISO times, nulls, three keys, one in
  ten up to a day late) into hourly windows, and the files it wrote;
- sessions: the analytics flow (30-minute user sessions and hourly revenue).

``--scale`` multiplies every event count (0.1 for a quick look).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from sources.broker import EmbeddedBroker
from sources.generators import AnalyticsGenerator, MonitoringGenerator
from sources.generators.base import EventGenerator
from sources.producer import PRODUCER_CONFIG
from sources.target import KafkaTarget
from sources.topics import TopicSpec

START = datetime(2024, 5, 1, tzinfo=UTC)
PARTITIONS = 32
STEADY_EVENTS = 1_000_000
BACKFILL_EVENTS = 336_776
SESSION_EVENTS = 500_000
STEADY = ["aggregate", "--key", "service", "--value", "latency_ms", "--window", "10s",
          "--agg", "count,mean,p50,p95,p99", "--time-field", "ts"]  # fmt: skip
BACKFILL = ["aggregate", "--key", "sensor", "--value", "value", "--window", "1h",
            "--agg", "count,mean,max,p95", "--time-field", "ts"]  # fmt: skip


def _produce(target: KafkaTarget, topic: str, values: Iterable[bytes]) -> int:
    """Send ``values`` keyed by their index (spread over every partition); how many."""
    producer = Producer({**target.client_config(), **PRODUCER_CONFIG})
    count = 0
    for count, value in enumerate(values, start=1):
        while True:
            try:
                producer.produce(topic, value, key=str(count).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return count


def _consume_rate(target: KafkaTarget, topic: str, count: int) -> float:
    """Events/s of a plain consume loop reading ``count`` messages of ``topic``."""
    consumer = Consumer({**target.client_config(), "group.id": "bench"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    started, seen = time.perf_counter(), 0
    while seen < count:
        messages = consumer.consume(min(10_000, count - seen), 10.0)  # no wait at the end
        if not messages:
            raise SystemExit(f"{topic} holds {seen:,} messages, not {count:,}")
        seen += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return count / elapsed


def _command_rate(bootstrap: str, topic: str, count: int, args: list[str], out: Path) -> float:
    """Events/s of ``eventlake ARGS --bounded --out OUT`` as a process over ``topic``."""
    command = [sys.executable, "-m", "flows.cli", *args, "--topic", topic, "--bounded",
               "--out", str(out), "--brokers", bootstrap]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return count / (time.perf_counter() - started)


def _generated(kind: type[EventGenerator], count: int) -> Iterator[bytes]:
    events = kind(seed=1, start=START).events()
    return (json.dumps(event).encode() for event in islice(events, count))


def _year_of_readings(count: int) -> Iterator[bytes]:
    """``count`` readings over a year; one in ten up to a day late, one in twenty null."""
    rnd = random.Random(1)
    spacing = timedelta(days=365) / count
    for i in range(count):
        late = timedelta(seconds=rnd.uniform(0, 86_400)) if rnd.random() < 0.1 else timedelta()
        value = None if rnd.random() < 0.05 else rnd.gauss(20, 5)
        ts = (START + spacing * i - late).isoformat()
        yield json.dumps({"ts": ts, "sensor": rnd.choice("abc"), "value": value}).encode()


def _files(table_dir: Path) -> str:
    files = list(table_dir.rglob("*.parquet"))
    directories = {path.parent for path in files}
    return f"{len(files):,} files in {len(directories):,} directories"


def main() -> None:
    """Run every scenario and print events/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    scale = parser.parse_args().scale
    steady, backfill, sessions = (
        round(n * scale) for n in (STEADY_EVENTS, BACKFILL_EVENTS, SESSION_EVENTS)
    )
    topics = [TopicSpec(name, PARTITIONS) for name in ("steady", "year", "shop")]
    rows: list[tuple[str, float, str]] = []
    with EmbeddedBroker(topics=topics) as bootstrap, tempfile.TemporaryDirectory() as work:
        target, out = KafkaTarget(bootstrap), Path(work)
        _produce(target, "steady", _generated(MonitoringGenerator, steady))
        ceiling = _consume_rate(target, "steady", steady)
        flow = _command_rate(bootstrap, "steady", steady, STEADY, out / "steady")
        recovery = ["--recovery-dir", str(out / "recovery"), "--snapshot-interval", "10s"]
        checkpointed = _command_rate(bootstrap, "steady", steady, [*STEADY, *recovery],
                                     out / "checkpointed")  # fmt: skip
        rows += [("steady state: aggregate 10s windows", flow, f"{flow / ceiling:.2f}x consume"),
                 ("  the same with checkpoints every 10s", checkpointed,
                  f"{checkpointed / flow:.2f}x without"),
                 ("  baseline: consume only", ceiling, "")]  # fmt: skip
        _produce(target, "year", _year_of_readings(backfill))
        ceiling = _consume_rate(target, "year", backfill)
        flow = _command_rate(bootstrap, "year", backfill, BACKFILL, out / "year")
        rows += [("backfill: a year into 1h windows", flow, f"{flow / ceiling:.2f}x consume"),
                 (f"  wrote {_files(out / 'year' / 'windows')}", 0.0, ""),
                 ("  baseline: consume only", ceiling, "")]  # fmt: skip
        _produce(target, "shop", _generated(AnalyticsGenerator, sessions))
        ceiling = _consume_rate(target, "shop", sessions)
        flow = _command_rate(bootstrap, "shop", sessions, ["run", "analytics"], out / "shop")
        rows += [("sessions: the analytics flow", flow, f"{flow / ceiling:.2f}x consume"),
                 ("  baseline: consume only", ceiling, "")]  # fmt: skip
    print(f"\n{'scenario':<52}{'events/s':>12}  ratio")
    for name, per_second, ratio in rows:
        rate = f"{per_second:>12,.0f}" if per_second else " " * 12
        print(f"{name:<52}{rate}  {ratio}")


if __name__ == "__main__":
    main()
