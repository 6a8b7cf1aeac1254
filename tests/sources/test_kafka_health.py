"""Outage lines, gap rows and the partition watch, with a clock passed in."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError

from common.errors import ResourceError
from sources.kafka_health import (
    QUIET_S,
    REPORT_EVERY_S,
    WATCH_EVERY_S,
    OutageReport,
    PartitionWatch,
    gap_error,
)
from tests.conftest import Broker, NewTopic


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_running_out_of_descriptors_is_an_error_naming_the_fixes_not_an_outage() -> None:
    lines: list[str] = []
    report = OutageReport("127.0.0.1:9", say=lines.append)
    error = KafkaError(KafkaError._TRANSPORT, "127.0.0.1:9/bootstrap: Failed to create socket: "
                       "Too many open files (after 0ms in state CONNECT)")  # fmt: skip
    with pytest.raises(ResourceError, match=r"Too many open files.*`ulimit -n`.*--processes"):
        report.on_error(error)
    assert lines == []


def test_an_outage_is_said_when_it_starts_every_few_seconds_and_when_it_ends() -> None:
    clock, lines = Clock(), []
    report = OutageReport("127.0.0.1:9", clock, lines.append)
    report.fine()
    report.trouble("connection refused")
    clock.now += 1
    report.trouble("connection refused")
    report.fine()  # a message fetched before the outage: Kafka has not answered yet
    clock.now += REPORT_EVERY_S
    report.trouble("connection refused")
    clock.now += QUIET_S
    report.fine()
    report.fine()

    assert lines == [
        "waiting for Kafka at 127.0.0.1:9 for 0s (connection refused); nothing is lost, "
        "reading resumes when it answers",
        "waiting for Kafka at 127.0.0.1:9 for 6s (connection refused); nothing is lost, "
        "reading resumes when it answers",
        "Kafka at 127.0.0.1:9 answers again after 6s",
    ]


def test_a_gap_error_names_both_ways_out() -> None:
    message = str(gap_error("t", 3, 100, 1_100))
    assert "offsets 100..1,099 of t[3] (1,000 messages)" in message
    assert "--on-gap continue" in message and "new --recovery-dir" in message


def test_partitions_added_while_running_are_said_once(
    broker: Broker, new_topic: NewTopic, caplog: pytest.LogCaptureFixture
) -> None:
    topic, clock = new_topic(partitions=3), Clock()
    consumer = Consumer({**broker.target.client_config(), "group.id": "tests"})
    watch = PartitionWatch(topic, partitions=2, clock=clock)
    watch.check(consumer)  # too early: asks nothing
    clock.now += WATCH_EVERY_S
    watch.check(consumer)
    clock.now += WATCH_EVERY_S
    watch.check(consumer)
    consumer.close()

    said = caplog.text
    assert said.count(f"topic {topic} now has 3 partitions, 2 when this run started") == 1
