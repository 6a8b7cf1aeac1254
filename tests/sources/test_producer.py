"""`eventlake produce`: exact counts, the generator's events, topic handling, pacing."""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from itertools import count, islice

import pytest

from sources.connection import list_topics
from sources.generators import GENERATORS
from sources.producer import ProduceRequest, paced_chunks
from tests.conftest import Broker, NewTopic
from tests.helpers import cli_process, eventlake, read_topic, topic_size

START = "2024-05-01T12:00:00Z"


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_produce_sends_exactly_count_generated_events(
    broker: Broker, new_topic: NewTopic, kind: str
) -> None:
    topic = new_topic(partitions=4)
    result = eventlake(
        "produce", kind, "--count", "3000", "--topic", topic, "--seed", "7", "--start", START,
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert topic_size(broker.target, topic) == 3000

    generator = GENERATORS[kind](
        seed=7, start=datetime(2024, 5, 1, 12, tzinfo=UTC), events_per_second=200.0
    )
    expected = list(islice(generator.events(), 3000))
    received = read_topic(broker.target, topic)
    key_field = generator.key_field
    assert all(json.loads(value or b"")[key_field].encode() == key for key, value in received)
    assert sorted(json.loads(value or b"")["ts"] for _, value in received) == sorted(
        event["ts"] for event in expected
    )
    canonical = sorted(json.dumps(event, sort_keys=True) for event in expected)
    assert (
        sorted(json.dumps(json.loads(v or b""), sort_keys=True) for _, v in received) == canonical
    )
    assert "3,000 events delivered" in result.stderr


def test_produce_creates_missing_topic_on_embedded_broker(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    topic = f"fresh-{request.node.name}"
    assert topic not in list_topics(broker.target)
    result = eventlake(
        "produce", "analytics", "--count", "10", "--topic", topic,
        "--partitions", "6", "--state-file", str(broker.process.state_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert topic_size(broker.target, topic) == 10
    assert list_topics(broker.target)[topic] == 6


def test_produce_refuses_missing_topic_on_other_clusters(broker: Broker) -> None:
    result = eventlake(
        "produce", "monitoring", "--count", "1", "--topic", "never-created",
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_count_and_duration_together_are_a_usage_error(broker: Broker) -> None:
    result = eventlake(
        "produce", "monitoring", "--count", "5", "--duration", "1s",
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 2
    assert "either --count or --duration" in result.stderr


def test_bad_duration_names_the_accepted_forms() -> None:
    result = eventlake("produce", "monitoring", "--duration", "soon")
    assert result.returncode == 2
    assert "e.g. 500ms, 30s, 5m" in result.stderr


class FakeClock:
    """Time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.releases: list[tuple[float, int]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


def _run_paced(request: ProduceRequest, clock: FakeClock) -> list[tuple[float, int]]:
    released = []
    total = 0
    for chunk in paced_chunks(count(), request, threading.Event(), clock, clock.sleep):
        total += len(chunk)
        released.append((clock.now, total))
        clock.now += 0.001  # sending takes a little time
    return released


def test_rate_is_never_exceeded_and_count_is_exact() -> None:
    clock = FakeClock()
    released = _run_paced(ProduceRequest("t", count=10_000, rate=2_000.0), clock)
    assert released[-1][1] == 10_000
    chunk = 2_000 // 50
    for at, total in released:
        assert total - chunk <= 2_000 * at + 1e-6  # released no earlier than due
    assert clock.now == pytest.approx(10_000 / 2_000, rel=0.02)


def test_rate_with_duration_sends_rate_times_duration() -> None:
    clock = FakeClock()
    released = _run_paced(ProduceRequest("t", duration_s=3.0, rate=333.0), clock)
    assert released[-1][1] == math.ceil(3.0 * 333.0)


def test_unpaced_duration_stops_when_time_is_up() -> None:
    clock = FakeClock()
    released = _run_paced(ProduceRequest("t", duration_s=0.01), clock)
    assert clock.now >= 0.01
    assert len(released) == 10


def test_stop_event_ends_an_endless_run() -> None:
    stop = threading.Event()
    chunks = paced_chunks(count(), ProduceRequest("t"), stop)
    next(chunks)
    stop.set()
    assert list(chunks) == []


def test_embedded_broker_dropping_old_messages_is_an_error(
    broker: Broker, new_topic: NewTopic
) -> None:
    topic = new_topic(partitions=1)
    # 500k events are 2.5x what one partition holds with zstd, 4x with lz4.
    result = eventlake(
        "produce", "monitoring", "--count", "500000", "--topic", topic,
        "--state-file", str(broker.process.state_file),
    )  # fmt: skip
    assert result.returncode == 1
    assert "dropped the" in result.stderr and "5 MiB per partition" in result.stderr


def _interrupt_after(process: subprocess.Popen[str], broker: Broker, topic: str) -> str:
    """SIGINT ``process`` once ``topic`` has some events; its stderr."""
    deadline = time.monotonic() + 60
    while topic_size(broker.target, topic) < 500:
        assert process.poll() is None, "the producer stopped by itself"
        assert time.monotonic() < deadline, "the producer sent nothing"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=60)[1]


def test_endless_run_stops_on_sigint_after_delivering_everything_sent(
    broker: Broker, new_topic: NewTopic
) -> None:
    topic = new_topic(partitions=2)
    args = ["--rate", "2000", "--topic", topic, "--brokers", broker.target.bootstrap_servers]
    with cli_process("produce", "analytics", *args, stderr=subprocess.PIPE) as process:
        stderr = _interrupt_after(process, broker, topic)

    assert process.returncode == 0, stderr
    delivered = re.search(r"([\d,]+) events delivered", stderr)
    assert delivered is not None
    assert int(delivered.group(1).replace(",", "")) == topic_size(broker.target, topic)


def test_interrupting_a_counted_run_exits_130(broker: Broker, new_topic: NewTopic) -> None:
    topic = new_topic(partitions=2)
    args = ["--count", "1000000", "--rate", "2000", "--topic", topic,
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process("produce", "analytics", *args, stderr=subprocess.PIPE) as process:
        stderr = _interrupt_after(process, broker, topic)
    assert process.returncode == 130
    assert "interrupted after" in stderr


def test_rate_and_duration_send_rate_times_duration(broker: Broker, new_topic: NewTopic) -> None:
    topic = new_topic(partitions=2)
    result = eventlake(
        "produce", "monitoring", "--rate", "400", "--duration", "1.5s", "--topic", topic,
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert topic_size(broker.target, topic) == 600


@pytest.mark.parametrize(("disorder", "expect_out_of_order"), [("0", False), ("0.5", True)])
def test_disorder_controls_out_of_order_events(
    broker: Broker, new_topic: NewTopic, disorder: str, expect_out_of_order: bool
) -> None:
    topic = new_topic(partitions=1)
    result = eventlake(
        "produce", "monitoring", "--count", "2000", "--disorder", disorder, "--topic", topic,
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stamps = [json.loads(value or b"")["ts"] for _, value in read_topic(broker.target, topic)]
    out_of_order = any(later < earlier for earlier, later in itertools.pairwise(stamps))
    assert out_of_order == expect_out_of_order


def test_disorder_is_refused_for_analytics(broker: Broker) -> None:
    result = eventlake(
        "produce", "analytics", "--count", "1", "--disorder", "0.1",
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--disorder applies to monitoring events only" in result.stderr
