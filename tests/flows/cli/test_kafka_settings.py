"""Kafka client settings through the CLI, against the embedded broker: -X, --kafka-config,
EVENTLAKE_X and a pipeline's [kafka] table reach the clients; secrets are never printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from confluent_kafka import Consumer, TopicPartition

from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import children_of, cli_process, produce_events, produce_raw, wait_for_a_commit

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


def test_eventlake_x_holds_one_setting_per_line_so_no_value_is_cut() -> None:
    """A password with a space was cut in two, and its second half printed."""
    settings = "sasl.password=HUNTER2 part2secret\n\nsecurity.protocol=SASL SSL\n"
    result = _eventlake("run", "monitoring", env={"EVENTLAKE_X": settings})
    assert result.returncode == 2, result.stderr
    assert 'Invalid value "SASL SSL" for configuration property "security.protocol"' in (
        result.stderr
    )
    assert "HUNTER2" not in result.stderr and "part2secret" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["-X", "sasl.password:HUNTER2colon"], "-X 'sasl.password:***' is not KEY=VALUE"),
        (["-X", "sasl.password", "HUNTER2colon"], "unexpected extra argument (***)"),
        (["-X", "security.protocol=SSL", "sasl.password=HUNTER2colon"], "extra argument"),
        (["ssl.key.pem=-----BEGIN-HUNTER2colon"], "unexpected extra argument"),
        (["-Xssl.key.pem=HUNTER2colon", "sasl.oauthbearer.config=HUNTER2colon"], "extra"),
        (["--workers", "sasl.password=HUNTER2colon"], "Invalid value for '--workers'"),
    ],
)
def test_a_secret_in_a_mistyped_command_line_is_never_shown(
    arguments: list[str], reason: str
) -> None:
    """Click's own usage errors quote what they cannot parse."""
    result = _eventlake("run", "monitoring", *arguments)
    assert result.returncode == 2
    assert reason in result.stderr and "HUNTER2" not in result.stderr


def test_a_short_secret_given_apart_from_its_key_is_not_shown_in_a_usage_error() -> None:
    result = _eventlake("run", "monitoring", "-X", "sasl.password", "abc12")
    assert result.returncode == 2
    assert "unexpected extra argument (***)" in result.stderr and "abc12" not in result.stderr


def test_a_short_secret_is_masked_by_its_key_and_garbles_nothing() -> None:
    """A one-letter password used to replace that letter in every printed line."""
    result = _eventlake("run", "monitoring", "-X", "sasl.password=a", "-X", "no.such.thing=1")
    assert result.returncode == 2
    assert 'No such configuration property: "no.such.thing"' in result.stderr
    misplaced = _eventlake("run", "monitoring", "-X", "client.id=a", "sasl.password=a")
    assert "unexpected extra argument (sasl.password=***)" in misplaced.stderr


def test_a_latin1_properties_file_reads_as_java_reads_it(tmp_path: Path) -> None:
    """Java's Properties.load reads ISO-8859-1; this used to end in a traceback."""
    properties = tmp_path / "client.properties"
    properties.write_bytes("# propriétés du client\nsecurity.protocol=sécurité\n".encode("latin-1"))
    result = _eventlake("run", "monitoring", "--kafka-config", str(properties))
    assert result.returncode == 2, result.stderr
    assert 'Invalid value "sécurité"' in result.stderr and "Traceback" not in result.stderr


def test_the_children_of_a_multi_process_run_get_their_settings_off_their_command_line(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """Every user can read a command line (ps); the children find Kafka only through the
    -X settings the supervisor passed them."""
    topic = new_topic(2)
    produce_events(broker.target, topic, MonitoringGenerator(seed=3), 2_000)
    servers = f"bootstrap.servers={broker.target.bootstrap_servers}"
    command = ["run", "monitoring", "--unbounded", "--processes", "2", "--topic", topic,
               "--out", str(tmp_path / "out"), "--recovery-dir", str(tmp_path / "recovery"),
               "--snapshot-interval", "0.3s", "--state-file", str(tmp_path / "none.json"),
               "-X", servers, f"-Xsasl.password={PASSWORD}"]  # fmt: skip
    with cli_process(*command, stderr=subprocess.PIPE) as supervisor:
        wait_for_a_commit(tmp_path / "recovery", 2, supervisor)
        children = children_of(supervisor.pid)
        command_lines = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=120)
    assert supervisor.returncode == 0, stderr
    assert len(command_lines) == 2 and all(b"flows.cli" in line for line in command_lines)
    for line in command_lines:
        assert PASSWORD.encode() not in line and b"bootstrap.servers" not in line


PIPELINE_WITH_DOTTED_KEYS = """
topic = "{topic}"
time_field = "ts"
[[aggregation]]
key = ["k"]
window = "1m"
[kafka]
bootstrap.servers = "{servers}"
client.id = "dotted"
"""


def test_unquoted_dotted_keys_in_a_pipelines_kafka_table_are_the_settings_they_name(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """TOML reads ``client.id = …`` as a nested table; it passed validate, then failed run."""
    topic = new_topic(1)
    events = [json.dumps({"ts": f"2024-05-01T12:00:0{i}Z", "k": "a"}).encode() for i in range(5)]
    produce_raw(broker.target, topic, events)
    pipeline = tmp_path / "dotted.toml"
    text = PIPELINE_WITH_DOTTED_KEYS.format(topic=topic, servers=broker.target.bootstrap_servers)
    pipeline.write_text(text)
    checked = _eventlake("validate", str(pipeline))
    assert checked.returncode == 0, checked.stderr
    nowhere = ["--state-file", str(tmp_path / "none.json"), "--out", str(tmp_path / "out")]
    done = _eventlake("run", str(pipeline), "--bounded", *nowhere)
    assert done.returncode == 0, done.stderr
    rows = ds.dataset(tmp_path / "out" / "windows").to_table().to_pylist()
    assert [(row["k"], row["count"]) for row in rows] == [("a", 5)]

    pipeline.write_text(text.replace("client.id", "client.idd"))
    refused = _eventlake("validate", str(pipeline))
    assert refused.returncode == 2
    assert 'No such configuration property: "client.idd"' in refused.stderr
    pipeline.write_text(f'{text}"client.id" = "quoted"\n')
    twice = _eventlake("validate", str(pipeline))
    assert twice.returncode == 2 and "[kafka] sets client.id twice" in twice.stderr
