"""Kafka client settings through the CLI, against the embedded broker: -X, --kafka-config,
EVENTLAKE_X and a pipeline's [kafka] table reach the clients; secrets are never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tests.conftest import Broker, NewTopic

PASSWORD = "hunter2-Zq8"
SASL_SSL = ["security.protocol=SASL_SSL", "sasl.mechanism=PLAIN", "sasl.username=alice"]


def _eventlake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _end_offset(broker: Broker, topic: str) -> int:
    consumer = Consumer({**broker.target.client_config(), "group.id": "settings-test"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in (0,))
    finally:
        consumer.close()


def test_bootstrap_servers_by_x_or_by_file_reach_the_producer(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """No --brokers and no broker state file: only the client settings say where Kafka is."""
    topic = new_topic(1)
    servers = f"bootstrap.servers={broker.target.bootstrap_servers}"
    properties = tmp_path / "client.properties"
    properties.write_text(f"# where the cluster is\n{servers}\nclient.id=eventlake-test\n")
    nowhere = ["--state-file", str(tmp_path / "none.json"), "--topic", topic, "--count", "50"]
    by_flag = _eventlake("produce", "monitoring", *nowhere, "-X", servers)
    by_file = _eventlake("produce", "monitoring", *nowhere, "--kafka-config", str(properties))
    assert by_flag.returncode == by_file.returncode == 0, by_flag.stderr + by_file.stderr
    assert _end_offset(broker, topic) == 100


def test_an_unknown_setting_exits_2_naming_it_before_anything_starts(tmp_path: Path) -> None:
    result = _eventlake("run", "monitoring", "--out", str(tmp_path), "-X", "no.such.thing=1")
    assert result.returncode == 2
    assert 'No such configuration property: "no.such.thing"' in result.stderr


def test_sasl_ssl_against_a_plaintext_broker_fails_in_time_and_never_shows_the_password(
    broker: Broker, tmp_path: Path
) -> None:
    """The embedded broker speaks neither SASL nor SSL. The password is given by flag, by
    properties file, by environment variable and by pipeline file."""
    properties = tmp_path / "client.properties"
    properties.write_text("\n".join([*SASL_SSL, f"sasl.password={PASSWORD}"]))
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        'topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["k"]\nwindow = "1m"\n'
        'agg = ["count"]\n[kafka]\n' + "\n".join(
            f'"{key}" = "{value}"' for key, value in (p.split("=") for p in SASL_SSL)
        ) + f'\n"sasl.password" = "{PASSWORD}"\n'
    )  # fmt: skip
    common = ["--brokers", broker.target.bootstrap_servers, "--broker-timeout", "3s"]
    out = ["--out", str(tmp_path / "out")]
    flags = [arg for setting in [*SASL_SSL, f"sasl.password={PASSWORD}"] for arg in ("-X", setting)]
    runs = [
        _eventlake("--log-level", "debug", "run", "monitoring", *out, *common, *flags),
        _eventlake("run", "monitoring", *out, *common, "--kafka-config", str(properties)),
        _eventlake(
            "run",
            "monitoring",
            *out,
            *common,
            "--kafka-config",
            str(properties),
            env={"EVENTLAKE_X": f"sasl.password={PASSWORD}"},
        ),
        _eventlake("run", str(pipeline), *out, *common),
    ]
    for result in runs:
        assert result.returncode == 2, result.stderr
        assert "cannot reach Kafka" in result.stderr and "security settings" in result.stderr
        assert PASSWORD not in result.stdout + result.stderr
    help_text = _eventlake("run", "--help", env={"EVENTLAKE_X": f"sasl.password={PASSWORD}"})
    assert help_text.returncode == 0 and PASSWORD not in help_text.stdout
