"""Finding Kafka: --brokers, the state file, and the errors when neither works."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common.errors import ConfigError
from sources.connection import (
    NO_BROKER_HELP,
    list_topics,
    resolve_target,
    validate_brokers,
)
from sources.target import KafkaTarget
from tests.conftest import Broker
from tests.helpers import eventlake


def test_explicit_brokers_win_over_state_file(broker: Broker, tmp_path: Path) -> None:
    target = resolve_target("127.0.0.1:9092, 127.0.0.1:9093", tmp_path / "none.json")
    assert target == KafkaTarget("127.0.0.1:9092,127.0.0.1:9093")


def test_state_file_of_running_broker_is_used(broker: Broker) -> None:
    target = resolve_target(None, broker.process.state_file)
    assert target.bootstrap_servers == broker.target.bootstrap_servers
    assert target.control_socket is not None


def test_no_brokers_and_no_state_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_target(None, tmp_path / "broker.json")
    assert NO_BROKER_HELP in str(caught.value)


@pytest.mark.parametrize("bad", ["localhost", "host:", ":9092", "h:0", "h:70000", "a:1,b"])
def test_malformed_brokers_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        validate_brokers(bad)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_brokers_fail_with_a_hint() -> None:
    target = KafkaTarget(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(ConfigError, match="cannot reach Kafka"):
        list_topics(target, timeout_s=2)


def test_cli_without_brokers_exits_2_with_documented_error(tmp_path: Path) -> None:
    result = eventlake(
        "produce", "monitoring", "--count", "1", "--state-file", str(tmp_path / "x.json")
    )
    assert result.returncode == 2
    assert "pass --brokers" in result.stderr and "eventlake broker" in result.stderr


def test_cli_with_invalid_brokers_exits_2(tmp_path: Path) -> None:
    result = eventlake("run", "monitoring", "--bounded", "--brokers", "nonsense")
    assert result.returncode == 2
    assert "invalid --brokers entry 'nonsense'" in result.stderr
