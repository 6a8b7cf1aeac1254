"""Watching real runs through the CLI: ``/metrics`` scraped while a bounded run reads
(one process and two), and the status line of an unbounded flow that starts far behind.
Figures are checked against what an independent reader finds: the topic's end offsets
and the Parquet tables the run wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.runtime.supervisor import free_ports
from sinks.parquet_files import count_rows
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import (
    busy_port,
    cli_process,
    eventlake,
    http_get,
    metric_samples,
    produce_events,
    produce_raw,
    topic_size,
)

START = datetime(2024, 5, 1, 12, tzinfo=UTC)
EVENTS, BAD, LATE = 40_000, 25, 40


def _topic(broker: Broker, new_topic: NewTopic) -> str:
    """Events, then bad bytes, then events two hours older than the rest (late)."""
    topic = new_topic(4)
    produce_events(broker.target, topic, MonitoringGenerator(seed=5, start=START), EVENTS)
    produce_raw(broker.target, topic, [b"not json"] * BAD)
    old = MonitoringGenerator(seed=6, start=START - timedelta(hours=2))
    produce_events(broker.target, topic, old, LATE)
    return topic


@dataclass
class Scrapes:
    """What a thread saw at ``/metrics`` and ``/healthz`` until the run's process ended."""

    port: int
    figures: list[dict[str, float]] = field(default_factory=list)
    health: set[tuple[int, str]] = field(default_factory=set)

    def follow(self, process: subprocess.Popen[str]) -> threading.Thread:
        thread = threading.Thread(target=self._scrape, args=(process,), daemon=True)
        thread.start()
        return thread

    def _scrape(self, process: subprocess.Popen[str]) -> None:
        while process.poll() is None:
            try:
                self.figures.append(_summed(http_get(self.port, "/metrics")[1]))
                self.health.add(http_get(self.port, "/healthz"))
            except OSError:  # URLError, refused, reset, timed out
                pass  # not serving yet, or any more
            time.sleep(0.05)


def _summed(text: str) -> dict[str, float]:
    """Each metric summed over its labels; ``rows_total`` per table as ``rows:<table>``."""
    summed: dict[str, float] = {}
    for (name, labels), value in metric_samples(text).items():
        key = f"rows:{dict(labels)['table']}" if name == "eventlake_rows_total" else name
        summed[key] = summed.get(key, 0.0) + value
    return summed


@pytest.mark.parametrize("processes", [1, 2])
def test_metrics_move_during_a_bounded_run_and_end_with_no_lag(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, processes: int
) -> None:
    topic, out, scrapes = _topic(broker, new_topic), tmp_path / "out", Scrapes(free_ports(1)[0])
    args = ["run", "monitoring", "--bounded", "--final", "--topic", topic, "--out", str(out),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.5s",
            "--batch-size", "50", "--processes", str(processes),
            "--metrics-port", str(scrapes.port),
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        scraping = scrapes.follow(process)
        _, stderr = process.communicate(timeout=240)
        scraping.join()
    assert process.returncode == 0, stderr
    seen = [figures for figures in scrapes.figures if "eventlake_events_total" in figures]
    assert len(seen) >= 3, f"only {len(seen)} scrapes during the run"
    events = [figures["eventlake_events_total"] for figures in seen]
    lags = [figures["eventlake_consumer_lag"] for figures in seen]
    assert events == sorted(events) and events[0] < events[-1], "events did not move"
    assert max(lags) > 0 and lags[-1] == 0, "lag did not fall to 0"
    last = seen[-1]
    assert events[-1] == topic_size(broker.target, topic) == EVENTS + BAD + LATE
    for table in ("service_metrics", "alerts", "late", "dead_letter"):  # what pyarrow reads
        assert last.get(f"rows:{table}", 0) == count_rows(out / table), table
    assert min(s.get("rows:service_metrics", 0) for s in seen) < last["rows:service_metrics"]
    assert last["eventlake_late_rows_total"] == count_rows(out / "late") > 0
    assert last["eventlake_dead_letters_total"] == count_rows(out / "dead_letter") == BAD
    assert last["eventlake_open_windows"] == 0  # a final run closes every window
    assert any("eventlake_checkpoint_epoch" in s for s in seen)
    assert scrapes.health == {(200, "ok\n")}


def _status_records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log records of status lines in ``stderr``."""
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if "status" in record]


def test_the_status_line_of_a_flow_that_starts_behind_shows_it_catching_up(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = _topic(broker, new_topic)
    args = ["--log-format", "json", "run", "monitoring", "--unbounded", "--topic", topic,
            "--out", str(tmp_path / "out"), "--recovery-dir", str(tmp_path / "recovery"),
            "--snapshot-interval", "0.5s", "--batch-size", "100", "--status-interval", "0.3s",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        assert process.stderr is not None
        seen, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            seen += line
            latest = _status_records(line)
            if latest and latest[0]["status"]["lag"] == 0 and "checkpoint" in line:
                break
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    records = _status_records(seen)
    lags = [record["status"]["lag"] for record in records]
    assert lags[-1] == 0 and any(lag is not None and lag > 0 for lag in lags), lags
    message = records[-1]["message"]
    expected = ("events/s", "lag 0", "watermark 2024-05-01", "behind", "open windows",
             "rows service_metrics", f"dead letters {BAD}", "gaps 0", "checkpoint")  # fmt: skip
    for figure in expected:
        assert figure in message, (figure, message)
    assert records[-1]["status"]["events"] == EVENTS + BAD + LATE


def test_a_busy_metrics_port_stops_the_run_before_it_starts(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic(1)
    with busy_port() as port:
        result = eventlake("run", "monitoring", "--bounded", "--topic", topic, "--out",
                           str(tmp_path), "--metrics-port", str(port),
                           "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert result.returncode == 2
    assert f"--metrics-port {port}" in result.stderr and "pick a free port" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing was written"
