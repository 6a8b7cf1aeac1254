"""Offsets committed to the consumer group, read back with a plain confluent-kafka consumer
as Kafka's lag tools read them: after bounded runs, clean stops, crashes and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from sinks.recovery_store import committed_states
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import cli_process, eventlake, produce_events

EVENTS = 3_000
PARTITIONS = 4
START = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _topic(broker: Broker, new_topic: NewTopic) -> str:
    topic = new_topic(PARTITIONS)
    produce_events(broker.target, topic, MonitoringGenerator(seed=3, start=START), EVENTS)
    return topic


def _committed(broker: Broker, topic: str, group: str) -> list[int]:
    """The group's committed offsets per partition (-1001 where none was committed)."""
    consumer = Consumer({**broker.target.client_config(), "group.id": group})
    try:
        parts = [TopicPartition(topic, part) for part in range(PARTITIONS)]
        return [tp.offset for tp in consumer.committed(parts, timeout=10)]
    finally:
        consumer.close()


def _ends(broker: Broker, topic: str) -> list[int]:
    consumer = Consumer({**broker.target.client_config(), "group.id": "ends"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(PARTITIONS)]  # fmt: skip
    finally:
        consumer.close()


def _run(broker: Broker, topic: str, out: Path, *args: str) -> None:
    result = eventlake("run", "monitoring", "--bounded", "--topic", topic, "--out", str(out),
                       "--brokers", broker.target.bootstrap_servers, *args)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_bounded_run_commits_what_it_read_with_or_without_checkpoints(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = _topic(broker, new_topic)
    _run(broker, topic, tmp_path / "plain")
    _run(broker, topic, tmp_path / "checked", "--group", "checked",
         "--recovery-dir", str(tmp_path / "recovery"))  # fmt: skip
    _run(broker, topic, tmp_path / "silent", "--group", "silent", "--no-commit")
    ends = _ends(broker, topic)
    assert sum(ends) == EVENTS
    assert _committed(broker, topic, f"eventlake-monitoring-{topic}") == ends  # the default
    assert _committed(broker, topic, "checked") == ends
    assert _committed(broker, topic, "silent") == [-1001] * PARTITIONS  # nothing committed


def test_a_run_that_cannot_write_commits_nothing_and_says_so_before_reading(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """A file where a table goes: exit 2 before anything is read, one line, no commit."""
    topic, out = _topic(broker, new_topic), tmp_path / "out"
    out.mkdir()
    (out / "service_metrics").write_text("not a directory")
    result = eventlake("run", "monitoring", "--bounded", "--topic", topic, "--out", str(out),
                       "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"error: {out / 'service_metrics'} is a file, where table service_metrics goes" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert _committed(broker, topic, f"eventlake-monitoring-{topic}") == [-1001] * PARTITIONS


def test_a_stopped_run_without_checkpoints_lost_its_open_windows_and_commits_nothing(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out = _topic(broker, new_topic), tmp_path / "out"
    args = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(out),
            "--group", "lossy", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        _wait_for(lambda: list(out.rglob("*.parquet")), "no file written")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped on request" in stderr
    assert _committed(broker, topic, "lossy") == [-1001] * PARTITIONS


def _wait_for(condition: object, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def _stop(process: subprocess.Popen[str], how: str) -> None:
    """SIGTERM the run, or press Ctrl-C as a terminal does: SIGINT to its process group,
    helper processes included."""
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_checkpoints_commit_while_running_and_a_clean_stop_commits_the_last(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, how: str
) -> None:
    topic, group = _topic(broker, new_topic), "running"
    ends = _ends(broker, topic)
    args = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(tmp_path / "out"),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "1s",
            "--group", group, "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE, start_new_session=True) as process:
        _wait_for(lambda: _committed(broker, topic, group) == ends, "no durable commit")
        _stop(process, how)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    assert "stopped on request" in stderr
    assert _committed(broker, topic, group) == ends


def test_after_a_crash_the_group_never_runs_ahead_of_the_checkpoint_nor_goes_back(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, group, recovery = _topic(broker, new_topic), "crashing", tmp_path / "recovery"
    args = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(tmp_path / "out"),
            "--recovery-dir", str(recovery), "--snapshot-interval", "1s", "--group", group,
            "--batch-size", "100", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        _wait_for(lambda: max(_committed(broker, topic, group)) > 0, "no commit before the kill")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    before = _committed(broker, topic, group)
    durable = committed_states(recovery, "monitoring.kafka")
    for part, offset in enumerate(before):  # committed offsets are durable ones, or older
        assert offset < 0 or offset <= durable[str(part)].next_offset
    _run(broker, topic, tmp_path / "out", "--recovery-dir", str(recovery), "--group", group)
    after = _committed(broker, topic, group)
    assert after == _ends(broker, topic)
    assert all(new >= old for new, old in zip(after, before, strict=True))
