"""Watching real runs through the CLI: ``/metrics`` scraped while a bounded run reads
(one process and two), and the status line of an unbounded flow that starts far behind.
Figures are checked against what an independent reader finds: the topic's end offsets
and the Parquet tables the run wrote. The endpoint listens on this host only unless told,
and a flood of connections under a low descriptor limit neither silences it nor stops
the run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.runtime.supervisor import free_ports
from sinks.parquet_files import count_rows
from sinks.recovery_store import resume_epoch
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import (
    busy_port,
    children_of,
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


def _shown_checkpoint(process: subprocess.Popen[str], after: int, seen: list[str]) -> int:
    """The first checkpoint epoch beyond ``after`` that the run's status line shows, its
    lines read until then kept in ``seen``; fails if the run ends, or after a minute (the
    figures stand still)."""
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.append(process.stderr.readline())
        assert seen[-1], f"the run ended: {''.join(seen)}"
        for record in _status_records(seen[-1]):
            shown = re.search(r"checkpoint (\d+) \(", record["message"])
            if shown and int(shown[1]) > after:
                return int(shown[1])
    raise AssertionError(f"the status line showed no checkpoint after {after} within a minute")


def _checkpoint_readers(pid: int) -> list[int]:
    """The helper processes (``python -m sinks.recovery_store``) of process ``pid``."""
    return [child for child in children_of(pid)
            if b"sinks.recovery_store" in Path(f"/proc/{child}/cmdline").read_bytes()]  # fmt: skip


def test_the_checkpoint_figures_move_on_after_the_checkpoint_readers_are_killed(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, recovery, seen = _topic(broker, new_topic), tmp_path / "recovery", []
    args = ["--log-format", "json", "run", "monitoring", "--unbounded", "--topic", topic,
            "--out", str(tmp_path / "out"), "--recovery-dir", str(recovery),
            "--snapshot-interval", "0.3s", "--batch-size", "100", "--status-interval", "0.3s",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        _shown_checkpoint(process, 0, seen)
        readers = _checkpoint_readers(process.pid)
        for reader in readers:
            os.kill(reader, signal.SIGKILL)
        durable = (resume_epoch(recovery) or 0) - 1  # none shown yet is newer
        _shown_checkpoint(process, durable, seen)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    said = [line for line in [*seen, *rest.splitlines()] if "checkpoint reader process" in line]
    assert readers and len(said) == len(readers), said  # once for each
    assert all("was killed by SIGKILL; starting a new one" in line for line in said), said


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
    assert not list(tmp_path.rglob("*.parquet")), "nothing written (only probed directories)"


DESCRIPTOR_LIMIT = 256
"""``ulimit -n`` of the flooded run: a run over 4 partitions needs about 180."""
FLOOD = 400


def _descriptor_limit() -> None:
    """What the flooded run's process does before it starts: ``ulimit -n`` (soft and
    hard) :data:`DESCRIPTOR_LIMIT`."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


@contextlib.contextmanager
def _idle_connections(port: int, count: int) -> Iterator[None]:
    """``count`` TCP connections to the local ``port``, made one after the other, that
    never send a byte; open while inside (the server may close them)."""
    sockets: list[socket.socket] = []
    try:
        for made in range(count):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            except OSError as err:
                raise AssertionError(f"the endpoint stopped accepting after {made}") from err
        yield
    finally:
        for sock in sockets:
            sock.close()


def _answer(port: int, path: str, process: subprocess.Popen[str]) -> tuple[int, str]:
    """GET ``path`` on the run's endpoint, asked again while it is refused (not serving
    yet, or full); fails once the run has ended or after a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return http_get(port, path)
        except OSError:  # URLError, refused, reset, timed out
            assert process.poll() is None, f"the run ended: {process.communicate()[1]}"
            assert time.monotonic() < deadline, f"{path} never answered"
            time.sleep(0.1)


def test_a_flood_of_idle_connections_neither_silences_the_endpoint_nor_stops_the_run(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out, (port,) = new_topic(4), tmp_path / "out", free_ports(1)
    produce_events(broker.target, topic, MonitoringGenerator(seed=5, start=START), EVENTS)
    args = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(out),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.5s",
            "--file-max-age", "0.5s", "--metrics-port", str(port),
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE, preexec_fn=_descriptor_limit) as process:
        assert _answer(port, "/healthz", process) == (200, "ok\n")
        with _idle_connections(port, FLOOD):
            assert _answer(port, "/healthz", process) == (200, "ok\n")
            later = MonitoringGenerator(seed=6, start=START + timedelta(hours=1))
            produce_events(broker.target, topic, later, EVENTS)  # the run reads on
            events = 0.0
            while events < 2 * EVENTS:
                status, text = _answer(port, "/metrics", process)
                assert status == 200
                events = _summed(text).get("eventlake_events_total", 0.0)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert count_rows(out / "service_metrics") > 0
    assert "Traceback" not in stderr and "Too many open files" not in stderr


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses that sockets listen on at ``port`` (from ``/proc/net/tcp``)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))  # little-endian
    return addresses


LISTENS_ON = [
    ([], "127.0.0.1"),
    (["--processes", "2"], "127.0.0.1"),
    (["--metrics-host", "0.0.0.0"], "0.0.0.0"),
]
"""Flags of a run, and the address its endpoint listens on."""


@pytest.mark.parametrize(("flags", "listens_on"), LISTENS_ON)
def test_the_endpoint_listens_on_this_host_only_unless_told(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, flags: list[str], listens_on: str
) -> None:
    (port,) = free_ports(1)
    args = ["run", "monitoring", "--unbounded", "--topic", new_topic(2),
            "--out", str(tmp_path / "out"), "--metrics-port", str(port), *flags,
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*args, stderr=subprocess.PIPE) as process:
        assert _answer(port, "/healthz", process) == (200, "ok\n")
        listening = _listening_addresses(port)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert listening == {listens_on}  # one endpoint, the supervisor's with --processes


def test_a_metrics_host_that_is_not_this_hosts_stops_the_run_before_it_starts(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    result = eventlake("run", "monitoring", "--bounded", "--topic", new_topic(1), "--out",
                       str(tmp_path), "--metrics-port", str(port), "--metrics-host", "192.0.2.1",
                       "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert result.returncode == 2
    assert "--metrics-host 192.0.2.1" in result.stderr
    assert "an address of this host" in result.stderr
    assert not list(tmp_path.rglob("*.parquet")), "nothing was written"
