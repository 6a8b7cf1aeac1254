"""The embedded broker: real clients over TCP, topic creation, the CLI process lifecycle."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from sources.broker import EmbeddedBroker, read_state
from sources.connection import list_topics
from sources.errors import BrokerError
from sources.target import KafkaTarget
from sources.topics import TopicSpec
from tests.conftest import Broker
from tests.helpers import eventlake, read_topic


def test_messages_round_trip_between_real_clients(broker: Broker, new_topic) -> None:
    topic = new_topic(partitions=3)
    sent = {(f"k{i}".encode(), f"value-{i}".encode()) for i in range(1000)}
    producer = Producer({**broker.target.client_config(), "compression.type": "lz4"})
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    assert set(read_topic(broker.target, topic)) == sent


def test_same_key_lands_in_same_partition(broker: Broker, new_topic) -> None:
    topic = new_topic(partitions=4)
    producer = Producer(broker.target.client_config())
    for i in range(200):
        producer.produce(topic, key=b"service-a", value=str(i).encode())
    assert producer.flush(30) == 0
    consumer = Consumer({**broker.target.client_config(), "group.id": "t"})
    sizes = [consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(4)]
    consumer.close()
    assert sorted(sizes) == [0, 0, 0, 200]


@pytest.mark.parametrize("partitions", [1, 7, 32])
def test_created_topics_have_requested_partitions(broker: Broker, new_topic, partitions) -> None:
    topic = new_topic(partitions=partitions)
    assert list_topics(broker.target)[topic] == partitions


def test_creating_an_existing_topic_is_refused(broker: Broker, new_topic) -> None:
    topic = new_topic(partitions=2)
    with pytest.raises(BrokerError, match="already exists"):
        broker.process.create_topic(TopicSpec(topic, 2))
    assert list_topics(broker.target)[topic] == 2


def test_topics_given_at_start_exist_with_their_partitions() -> None:
    with EmbeddedBroker(topics=[TopicSpec("alpha", 5), TopicSpec("beta", 1)]) as bootstrap:
        topics = list_topics(KafkaTarget(bootstrap))
    assert topics["alpha"] == 5
    assert topics["beta"] == 1


def test_several_brokers_are_listed_in_bootstrap() -> None:
    with EmbeddedBroker(brokers_count=3) as bootstrap:
        assert len(bootstrap.split(",")) == 3


def _start_cli_broker(state_file: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "flows.cli", "broker", "--state-file", str(state_file)]
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, text=True)


def test_cli_broker_prints_address_first_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    process = _start_cli_broker(state_file, "--topics", "orders:3")
    assert process.stdout is not None
    first_line = process.stdout.readline().strip()

    host, port = first_line.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    state = read_state(state_file)
    assert state is not None and state.bootstrap_servers == first_line
    assert list_topics(KafkaTarget(first_line))["orders"] == 3
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    assert not state_file.exists()
    assert not Path(state.control_socket).exists()
    process.stdout.close()


def test_cli_broker_default_topics_are_requests_and_shop(tmp_path: Path) -> None:
    process = _start_cli_broker(tmp_path / "broker.json")
    assert process.stdout is not None
    topics = list_topics(KafkaTarget(process.stdout.readline().strip()))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    process.stdout.close()
    assert topics["requests"] == 16 and topics["shop"] == 8


def test_second_broker_on_same_state_file_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    first = _start_cli_broker(state_file)
    assert first.stdout is not None
    address = first.stdout.readline().strip()
    try:
        second = eventlake("broker", "--state-file", str(state_file))
        assert second.returncode == 2
        assert "already running" in second.stderr and address in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)
        first.stdout.close()


def test_cli_create_topic_talks_to_the_running_broker(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    process = _start_cli_broker(state_file, "--topics", "")
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    try:
        created = eventlake("broker", "create-topic", "wide:24", "--state-file", str(state_file))
        again = eventlake("broker", "create-topic", "wide:24", "--state-file", str(state_file))
        topics = list_topics(KafkaTarget(address))
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()
    assert created.returncode == 0, created.stderr
    assert topics["wide"] == 24
    assert again.returncode == 1 and "already exists" in again.stderr


def test_cli_create_topic_without_broker_says_to_start_one(tmp_path: Path) -> None:
    result = eventlake("broker", "create-topic", "x:2", "--state-file", str(tmp_path / "no.json"))
    assert result.returncode == 1
    assert "eventlake broker" in result.stderr


def test_stale_state_file_is_ignored(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    state_file.write_text(
        json.dumps(
            {"bootstrap_servers": "127.0.0.1:1", "control_socket": "/nowhere", "pid": int(dead_pid)}
        )
    )
    assert read_state(state_file) is None
