"""Stopping is cluster-wide: SIGTERM to one of two processes started by hand stops both
cleanly, and the same commands resume to the batch oracle; the children of a SIGKILLed
supervisor die with it, so the same command starts again at once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds

from flows.runtime.supervisor import free_addresses
from sinks.recovery_store import resume_epoch
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.flows import oracle
from tests.helpers import (
    children_of,
    cli_process,
    eventlake,
    produce_events,
    read_topic,
    wait_for_a_commit,
)

START = datetime(2024, 5, 1, 12, tzinfo=UTC)
EVENTS = 6_000


def _command(broker: Broker, topic: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "monitoring", "--topic", topic, "--out", str(tmp_path / "out"),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.3s",
            "--brokers", broker.target.bootstrap_servers, *extra]  # fmt: skip


def _processes(command: list[str], addresses: str) -> list[list[str]]:
    return [[*command, "-i", str(index), "-a", addresses] for index in range(2)]


def test_sigterm_to_one_hand_started_process_stops_both_and_they_resume(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, addresses = new_topic(partitions=4), ";".join(free_addresses(2))
    generator = MonitoringGenerator(seed=9, start=START)
    produce_events(broker.target, topic, generator, EVENTS)
    command = _command(broker, topic, tmp_path, "--unbounded")
    first, second = _processes(command, addresses)
    with (
        cli_process(*first, stderr=subprocess.PIPE) as zero,
        cli_process(*second, stderr=subprocess.PIPE) as one,
    ):
        wait_for_a_commit(tmp_path / "recovery", 2, one)
        one.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[1] for process in (zero, one)]
    for process, stderr in zip((zero, one), outputs, strict=True):
        assert process.returncode == 0, stderr
        assert "stopped on request with every buffered row written" in stderr

    produce_events(broker.target, topic, generator, EVENTS)  # the same generator: later events
    final = _command(broker, topic, tmp_path, "--bounded", "--final")
    with (
        cli_process(*_processes(final, addresses)[0], stderr=subprocess.PIPE) as zero,
        cli_process(*_processes(final, addresses)[1], stderr=subprocess.PIPE) as one,
    ):
        outputs = [process.communicate(timeout=120)[1] for process in (zero, one)]
    assert [zero.returncode, one.returncode] == [0, 0], outputs
    assert all("resuming from epoch" in stderr for stderr in outputs)

    events = oracle.parse_events(read_topic(broker.target, topic), ("service",))
    expected = oracle.tumbling(events, ("service", "endpoint"), 60_000_000)
    rows = ds.dataset(tmp_path / "out" / "service_metrics").to_table().to_pylist()
    counted = oracle.by_key(
        rows, lambda r: (r["service"], r["endpoint"], oracle.micros(r["window_start"]))
    )
    late = Counter(
        (r["service"], r["endpoint"], oracle.micros(r["window_start"]))
        for r in ds.dataset(tmp_path / "out" / "late").to_table().to_pylist()
    )
    assert len(events) == 2 * EVENTS
    for window, members in expected.items():
        assert counted.get(window, {"count": 0})["count"] + late[window] == len(members), window


def test_the_children_of_a_killed_supervisor_die_with_it(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    produce_events(broker.target, topic, MonitoringGenerator(seed=1, start=START), 2_000)
    command = _command(broker, topic, tmp_path, "--unbounded", "--processes", "2")
    with cli_process(*command, stderr=subprocess.PIPE) as supervisor:
        wait_for_a_commit(tmp_path / "recovery", 2, supervisor)
        children = children_of(supervisor.pid)
        assert len(children) == 2
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=30)
    deadline = time.monotonic() + 60
    while any(_alive(child) for child in children):
        assert time.monotonic() < deadline, "a child outlived its supervisor"
        time.sleep(0.1)

    epoch = resume_epoch(tmp_path / "recovery")
    again = eventlake(*_command(broker, topic, tmp_path, "--bounded"))
    assert again.returncode == 0, again.stderr  # no orphan holds the recovery directory
    assert f"resuming from epoch {epoch}" in again.stderr


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: its parent was killed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
