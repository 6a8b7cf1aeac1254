"""eventlake status on a finished, a running and a crashed run, read as a user reads it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import cli_process, eventlake, produce_events

EVENTS = 4_000


def _status(broker: Broker, recovery: Path) -> dict[str, Any]:
    result = eventlake("status", "--recovery-dir", str(recovery), "--json",
                       "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _topic(broker: Broker, new_topic: NewTopic) -> str:
    topic = new_topic(2)
    generator = MonitoringGenerator(seed=4, start=datetime(2024, 5, 1, tzinfo=UTC))
    produce_events(broker.target, topic, generator, EVENTS)
    return topic


def _caught_up(broker: Broker, recovery: Path) -> bool:
    """Whether a checkpoint holds every event (and the lag is 0)."""
    if not (recovery / "run-definition.json").exists():
        return False
    status = _status(broker, recovery)
    return sum(p["checkpointed"] for p in status["partitions"]) == EVENTS and status["lag"] == 0


def test_a_finished_run_has_no_lag_its_tables_and_the_windows_it_kept_open(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, recovery = _topic(broker, new_topic), tmp_path / "recovery"
    command = ["run", "monitoring", "--bounded", "--topic", topic, "--out",
               str(tmp_path / "out"), "--recovery-dir", str(recovery),
               "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    done = eventlake(*command)
    assert done.returncode == 0, done.stderr
    status = _status(broker, recovery)
    assert (status["flow"], status["topic"], status["running"]) == ("monitoring", topic, [])
    assert status["lag"] == 0 and sum(p["checkpointed"] for p in status["partitions"]) == EVENTS
    rows = {table["table"]: table["rows"] for table in status["tables"]}
    assert rows["service_metrics"] > 0 and rows["dead_letter"] == 0
    kept = status["open_windows"]["service_metrics"]
    assert kept > 0 and f"{kept} windows still open, kept for the next run" in done.stderr
    text = eventlake("status", "--recovery-dir", str(recovery), "--state-file",
                     str(tmp_path / "none.json"))  # fmt: skip
    assert text.returncode == 0 and "lag: unknown (pass --brokers)" in text.stdout
    assert f"open windows kept for the next run: service_metrics {kept}" in text.stdout

    final = eventlake(*command, "--final")
    assert final.returncode == 0, final.stderr
    assert "still open" not in final.stderr and "already complete" not in final.stderr
    assert _status(broker, recovery)["open_windows"] == {"service_metrics": 0}
    closed = {table["table"]: table["rows"] for table in _status(broker, recovery)["tables"]}
    assert closed["service_metrics"] == rows["service_metrics"] + kept


def test_a_running_run_names_its_process_and_a_crashed_one_none(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, recovery = _topic(broker, new_topic), tmp_path / "recovery"
    args = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(tmp_path / "out"),
            "--recovery-dir", str(recovery), "--snapshot-interval", "1s",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 90
        while not _caught_up(broker, recovery):
            assert time.monotonic() < deadline, "the run never caught up"
            time.sleep(0.5)
        running = _status(broker, recovery)["running"]
        assert [holder["pid"] for holder in running] == [process.pid]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    crashed = _status(broker, recovery)
    assert crashed["running"] == [] and crashed["resume_epoch"] is not None
    assert crashed["lag"] == 0  # everything read was checkpointed before the kill
