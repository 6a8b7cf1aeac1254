"""The Kafka batch source against the embedded broker: a partition back from idleness
is flagged ``behind`` until it has caught up with every partition's newest event."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from common.metrics import RunMetrics
from sources.batches import DecodedBatch
from sources.consumer_config import BUDGETED_PARTITIONS, PREFETCH_BUDGET, consumer_config
from sources.decode import JsonDecoder
from sources.kafka_source import KafkaBatchSource, ReadOptions
from sources.target import KafkaTarget
from tests.conftest import Broker, NewTopic
from tests.helpers import READ_TIMEOUT_S

T0 = datetime(2024, 5, 1, tzinfo=UTC)
IDLE_S = 0.5
OVERFLOW = 60_000
"""Messages of ~120 bytes: more than the embedded broker keeps in a partition."""
SCHEMA = pa.schema([("ts", pa.string())])


def send(broker: Broker, topic: str, partition: int, minutes: list[int]) -> None:
    producer = Producer(broker.target.client_config())
    for minute in minutes:
        event = {"ts": (T0 + timedelta(minutes=minute)).isoformat()}
        producer.produce(topic, json.dumps(event).encode(), partition=partition)
    assert producer.flush(30) == 0


def next_data(reader: object) -> DecodedBatch:
    """The next batch that holds events, waiting for them to arrive."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        for batch in reader.next_batch():  # type: ignore[attr-defined]
            if batch.records.num_rows:
                return batch
        time.sleep(0.01)
    raise AssertionError("no events arrived")


def go_idle(reader: object) -> None:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not any(batch.idle for batch in reader.next_batch()):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the partition never went idle"
        time.sleep(0.02)


@pytest.mark.parametrize("read_here", [(0, 1), (0,)], ids=["all partitions", "one of two"])
def test_a_partition_back_from_idleness_is_behind_until_it_catches_up(
    broker: Broker, new_topic: NewTopic, read_here: tuple[int, ...]
) -> None:
    topic = new_topic(partitions=2)
    source = KafkaBatchSource(
        broker.target, topic, JsonDecoder(SCHEMA, "ts"), ReadOptions(False, IDLE_S)
    )
    send(broker, topic, 0, [1])
    readers = [source.build_part("kafka", str(p), None) for p in read_here]
    try:
        assert not next_data(readers[0]).behind
        go_idle(readers[0])
        send(broker, topic, 0, [2])
        assert next_data(readers[0]).behind, "its first batch back is judged"
        send(broker, topic, 0, [3])
        # It now holds the newest event read here; only a process reading every
        # partition knows that no other partition is ahead.
        assert next_data(readers[0]).behind
        send(broker, topic, 0, [4])
        assert next_data(readers[0]).behind == (read_here == (0,))
    finally:
        for reader in readers:
            reader.close()


def _overflow(broker: Broker, topic: str, partition: int, minute: int) -> None:
    """Send more than the embedded broker keeps per partition (5 MiB): it drops the oldest."""
    producer = Producer(broker.target.client_config())
    event = json.dumps({"ts": (T0 + timedelta(minutes=minute)).isoformat(), "pad": "x" * 80})
    for _ in range(OVERFLOW):
        while True:
            try:
                producer.produce(topic, event.encode(), partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(30) == 0


def test_a_partition_back_from_idleness_with_a_gap_first_is_still_behind(
    broker: Broker, new_topic: NewTopic
) -> None:
    """Its first batch back holds only the gap row; the rows after it may still be behind
    the watermark, which followed the other partition meanwhile."""
    topic = new_topic(partitions=2)
    source = KafkaBatchSource(
        broker.target, topic, JsonDecoder(SCHEMA, "ts"), ReadOptions(False, IDLE_S)
    )
    send(broker, topic, 0, [1])
    send(broker, topic, 1, [1])
    idle, other = (source.build_part("kafka", str(p), None) for p in (0, 1))
    try:
        next_data(idle), next_data(other)
        paused = [TopicPartition(topic, 0)]
        idle._consumer.pause(paused)  # type: ignore[attr-defined]  # fetch nothing meanwhile
        go_idle(idle)
        send(broker, topic, 1, [10])
        next_data(other)
        _overflow(broker, topic, 0, minute=2)  # its next offset is deleted
        idle._consumer.resume(paused)  # type: ignore[attr-defined]
        back = _next_loud(idle)
        assert back.gaps and not back.records.num_rows and back.behind
        assert next_data(idle).behind, "minute 2 is behind minute 10: its rows are judged"
    finally:
        idle.close()
        other.close()


def _next_loud(reader: object) -> DecodedBatch:
    """The next batch that is not a quiet one (events, a gap or an end)."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        for batch in reader.next_batch():  # type: ignore[attr-defined]
            if batch.records.num_rows or batch.gaps or batch.ended:
                return batch
        time.sleep(0.01)
    raise AssertionError("nothing came")


@pytest.mark.parametrize("partitions", [1, 16, 64, 300, 5_000, BUDGETED_PARTITIONS])
def test_the_consumers_of_a_topic_prefetch_within_one_budget_whatever_its_partitions(
    partitions: int,
) -> None:
    config = consumer_config(KafkaTarget("127.0.0.1:9"), partitions)
    Consumer(config).close()  # librdkafka takes them
    messages, kbytes = PREFETCH_BUDGET
    assert config["queued.min.messages"] * partitions <= messages
    # librdkafka may overshoot a queue's limit by one fetch
    queued = config["queued.max.messages.kbytes"] + config["fetch.message.max.bytes"] / 1024
    assert queued * partitions <= kbytes


def test_a_reader_reports_the_end_offsets_librdkafka_fetches_as_messages_come(
    broker: Broker, new_topic: NewTopic
) -> None:
    topic, metrics = new_topic(partitions=1), RunMetrics()
    send(broker, topic, 0, [1, 2, 3])
    options = ReadOptions(False, batch_size=1)  # one message per batch: the end runs ahead
    source = KafkaBatchSource(broker.target, topic, JsonDecoder(SCHEMA, "ts"), options, metrics)
    reader = source.build_part("kafka", "0", None)
    try:
        assert metrics.figures().lag() == 3  # the end when it opened
        send(broker, topic, 0, [4, 5, 6, 7])
        seen: list[tuple[int, int | None]] = []
        while not seen or seen[-1] != (7, 7):
            next_data(reader)
            part = metrics.figures().partitions[0]
            seen.append((part.position, part.end))
        assert any(end == 7 and position < 7 for position, end in seen), seen
        assert metrics.figures().lag() == 0 and metrics.figures().events() == 7
        active_at = metrics.figures().active_at
        time.sleep(0.05)
        reader.next_batch()  # asking Kafka for messages is what /healthz watches
        assert (metrics.figures().active_at or 0) > (active_at or 0)
    finally:
        reader.close()
