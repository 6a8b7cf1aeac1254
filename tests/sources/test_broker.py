"""The embedded broker: real clients over TCP, topic creation, outages, the CLI process
lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from common.errors import BrokerError
from sources.broker import EmbeddedBroker, read_state
from sources.connection import list_topics
from sources.target import KafkaTarget
from sources.topics import TopicSpec
from tests.conftest import Broker, NewTopic
from tests.helpers import cli_process, eventlake, read_topic

pytestmark = pytest.mark.integration  # starts brokers of its own


def test_messages_round_trip_between_real_clients(broker: Broker, new_topic: NewTopic) -> None:
    topic = new_topic(partitions=3)
    sent = {(f"k{i}".encode(), f"value-{i}".encode()) for i in range(1000)}
    producer = Producer({**broker.target.client_config(), "compression.type": "lz4"})
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    assert set(read_topic(broker.target, topic)) == sent


def test_same_key_lands_in_same_partition(broker: Broker, new_topic: NewTopic) -> None:
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
def test_created_topics_have_requested_partitions(
    broker: Broker, new_topic: NewTopic, partitions: int
) -> None:
    topic = new_topic(partitions=partitions)
    assert list_topics(broker.target)[topic] == partitions


def test_creating_an_existing_topic_is_refused(broker: Broker, new_topic: NewTopic) -> None:
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


def _cli_broker(state_file: Path, *args: str) -> AbstractContextManager[subprocess.Popen[str]]:
    return cli_process("broker", "--state-file", str(state_file), *args, stdout=subprocess.PIPE)


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def test_cli_broker_prints_address_first_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    with _cli_broker(state_file, "--topics", "orders:3") as process:
        first_line = _first_line(process)
        host, port = first_line.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        state = read_state(state_file)
        assert state is not None and state.bootstrap_servers == first_line
        assert list_topics(KafkaTarget(first_line))["orders"] == 3
        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=30) == 0
    assert not state_file.exists()
    assert not Path(state.control_socket).exists()


def test_cli_broker_default_topics_are_requests_and_shop(tmp_path: Path) -> None:
    with _cli_broker(tmp_path / "broker.json") as process:
        topics = list_topics(KafkaTarget(_first_line(process)))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert topics["requests"] == 16 and topics["shop"] == 8


def test_broker_that_cannot_create_its_topics_exits_1_and_leaves_nothing(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    result = eventlake("broker", "--topics", "a:1,a:2", "--state-file", str(state_file), timeout=60)
    assert result.returncode == 1
    assert "topic 'a' already exists" in result.stderr
    assert result.stdout == ""
    assert not state_file.exists()


def test_second_broker_on_same_state_file_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    with _cli_broker(state_file) as first:
        address = _first_line(first)
        second = eventlake("broker", "--state-file", str(state_file))
    assert second.returncode == 2
    assert "already running" in second.stderr and address in second.stderr


def test_cli_create_topic_talks_to_the_running_broker(tmp_path: Path) -> None:
    state_file = tmp_path / "broker.json"
    with _cli_broker(state_file, "--topics", "") as process:
        address = _first_line(process)
        created = eventlake("broker", "create-topic", "wide:24", "--state-file", str(state_file))
        again = eventlake("broker", "create-topic", "wide:24", "--state-file", str(state_file))
        # The group's --state-file also applies to the subcommand.
        grouped = eventlake("broker", "--state-file", str(state_file), "create-topic", "narrow:2")
        topics = list_topics(KafkaTarget(address))
    assert created.returncode == 0, created.stderr
    assert grouped.returncode == 0, grouped.stderr
    assert topics["wide"] == 24 and topics["narrow"] == 2
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


@pytest.fixture
def killed_broker_state(tmp_path: Path) -> Iterator[Path]:
    """A state file as a SIGKILLed broker leaves it (its control socket file too), with
    its pid reused: a live process (this test's) has it now."""
    state_file = tmp_path / "broker.json"
    with _cli_broker(state_file, "--topics", "") as process:
        _first_line(process)
        process.kill()
        process.wait(timeout=30)
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "pid": os.getpid()}))
    yield state_file
    shutil.rmtree(Path(state["control_socket"]).parent)


def test_a_killed_brokers_state_file_does_not_stop_a_new_broker(
    killed_broker_state: Path,
) -> None:
    with _cli_broker(killed_broker_state, "--topics", "") as process:
        address = _first_line(process)
        assert address, "the new broker refused to start"
        state = read_state(killed_broker_state)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert state is not None and state.bootstrap_servers == address


def test_produce_says_no_broker_runs_instead_of_retrying_a_killed_ones_address(
    killed_broker_state: Path,
) -> None:
    state_file = str(killed_broker_state)
    result = eventlake("produce", "monitoring", "--count", "10", "--state-file", state_file)
    assert result.returncode == 2
    assert f"no running broker recorded in {state_file}" in result.stderr
    assert "cannot reach Kafka" not in result.stderr


def _accepts_connections(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def _read_values(consumer: Consumer, count: int, timeout_s: float) -> list[bytes]:
    """Up to ``count`` message values, reading for at most ``timeout_s``."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < count and time.monotonic() < deadline:
        for message in consumer.consume(count - len(values), 0.1):
            if message.error() is None:
                values.append(message.value())
    return values


def test_clients_wait_out_an_outage_and_lose_nothing() -> None:
    embedded = EmbeddedBroker(topics=[TopicSpec("outage", 1)])
    with embedded as bootstrap:
        producer = Producer({"bootstrap.servers": bootstrap})
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
        consumer.assign([TopicPartition("outage", 0, 0)])
        producer.produce("outage", value=b"before")
        assert producer.flush(30) == 0
        assert _read_values(consumer, 1, 30) == [b"before"]

        embedded.set_broker_up(None, up=False)
        during = [f"during-{i}".encode() for i in range(100)]
        for value in during:
            producer.produce("outage", value=value)
        assert producer.flush(1) == len(during)
        assert _read_values(consumer, 1, 1) == []

        embedded.set_broker_up(None, up=True)
        assert producer.flush(30) == 0
        assert sorted(_read_values(consumer, len(during), 30)) == sorted(during)
        consumer.close()


def test_a_broker_that_is_down_refuses_connections_and_the_others_serve() -> None:
    embedded = EmbeddedBroker(brokers_count=2)
    with embedded as bootstrap:
        first, second = bootstrap.split(",")
        embedded.set_broker_up(2, up=False)
        assert _accepts_connections(first) and not _accepts_connections(second)
        embedded.set_broker_up(2, up=True)
        assert _accepts_connections(second)
        with pytest.raises(BrokerError, match="broker ids 1, 2"):
            embedded.set_broker_up(3, up=False)


def test_cli_takes_brokers_down_and_up() -> None:
    embedded = EmbeddedBroker(brokers_count=2)
    with embedded as bootstrap:
        state_file = str(embedded.state_file)
        down = eventlake("broker", "down", "--state-file", state_file)
        refused = [not _accepts_connections(address) for address in bootstrap.split(",")]
        up_one = eventlake("broker", "up", "1", "--state-file", state_file)
        first, second = (_accepts_connections(address) for address in bootstrap.split(","))
        unknown = eventlake("broker", "down", "7", "--state-file", state_file)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "every broker is down" and refused == [True, True]
    assert up_one.returncode == 0, up_one.stderr
    assert up_one.stdout.strip() == "broker 1 is up" and first and not second
    assert unknown.returncode == 1
    assert "broker 7" in unknown.stderr and "broker ids 1, 2" in unknown.stderr
