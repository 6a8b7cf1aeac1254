"""Crash anywhere, resume, lose nothing, duplicate nothing: real processes, real SIGKILLs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from flows import monitoring
from flows.recovery import resume_epoch
from flows.runner import run_dataflow
from flows.settings import FlowSettings
from sinks.faults import MOMENTS
from sources.generators import MonitoringGenerator
from tests.conftest import Broker
from tests.helpers import eventlake, produce_events

EVENTS = 150_000
EXACT = (
    "service",
    "endpoint",
    "window_start",
    "window_end",
    "count",
    "error_count",
    "max_latency_ms",
)


@pytest.fixture(scope="module")
def crash_topic(broker: Broker) -> str:
    topic = broker.new_topic("recovery", partitions=16)
    generator = MonitoringGenerator(seed=21, start=datetime(2024, 5, 1, 8, tzinfo=UTC))
    produce_events(broker.target, topic, generator, EVENTS)
    return topic


@pytest.fixture(scope="module")
def uninterrupted(
    broker: Broker, crash_topic: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    run_dataflow(monitoring.build_flow(FlowSettings(broker.target, crash_topic, out, bounded=True)))
    return out


def _rows(out: Path) -> list[tuple[Any, ...]]:
    table = ds.dataset(out / monitoring.TABLE).to_table()
    return sorted(tuple(row[name] for name in EXACT) for row in table.to_pylist())


def _run_with_kills(args: list[str], kills: int, seed: int) -> int:
    """Run until it finishes, SIGKILLing it ``kills`` times at random moments; runs started."""
    rnd = random.Random(seed)
    command = [sys.executable, "-m", "flows.cli", "run", "monitoring", *args]
    recovery_dir = Path(args[args.index("--recovery-dir") + 1])
    for attempt in range(1, kills + 10):
        before = max(resume_epoch(recovery_dir) or 1, 1)  # a fresh run starts at epoch 1
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        if attempt <= kills:
            _wait_for_a_commit(recovery_dir, before, process)
            time.sleep(rnd.uniform(0.0, 0.8))
            process.send_signal(signal.SIGKILL)
        try:
            _, stderr = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        if process.returncode == 0:
            assert attempt > kills, "the run finished before it could be killed"
            return attempt
        assert process.returncode == -signal.SIGKILL, stderr
    raise AssertionError("the run never finished")


def _wait_for_a_commit(recovery_dir: Path, before: int, process: subprocess.Popen[str]) -> None:
    """Block until this run has committed a new epoch, so that the kill lands mid-run."""
    deadline = time.monotonic() + 60
    while (resume_epoch(recovery_dir) or 0) <= before and process.poll() is None:
        assert time.monotonic() < deadline, "no snapshot was ever committed"
        time.sleep(0.05)


@pytest.mark.parametrize("resume_workers", ["1", "2"])
def test_sigkilled_runs_resume_to_exactly_the_uninterrupted_output(
    broker: Broker, crash_topic: str, uninterrupted: Path, tmp_path: Path, resume_workers: str
) -> None:
    base = ["--bounded", "--topic", crash_topic, "--out", str(tmp_path / "out"),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.5s",
            "--batch-size", "300", "--file-rows", "20",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    _run_with_kills(base, kills=2, seed=len(resume_workers))
    resumed = eventlake("run", "monitoring", *base, "--workers", resume_workers)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from epoch" in resumed.stderr

    expected, actual = _rows(uninterrupted), _rows(tmp_path / "out")
    assert len(actual) == len(set(actual)), "duplicate rows"
    assert actual == expected
    again = eventlake("run", "monitoring", *base)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert _rows(tmp_path / "out") == expected


def _poll_readers(table_dir: Path, stop: threading.Event, failures: list[str]) -> None:
    """Read the table over and over, as a notebook would, recording partial-file failures.

    A file listed just before a resume deletes it (it was written after the last
    snapshot) can vanish before it is opened: readers retry that. What must never
    happen is reading a partial file.
    """
    while not stop.is_set():
        try:
            if table_dir.exists():
                ds.dataset(table_dir).to_table()
        except FileNotFoundError:
            pass
        except Exception as err:  # a partial file would show up here
            failures.append(repr(err))
        time.sleep(0.02)


@pytest.mark.parametrize("moment", MOMENTS)
def test_crash_at_each_commit_moment_resumes_exactly_once(
    broker: Broker, crash_topic: str, uninterrupted: Path, tmp_path: Path, moment: str
) -> None:
    base = ["run", "monitoring", "--bounded", "--topic", crash_topic, "--out", str(tmp_path),
            "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.3s",
            "--batch-size", "300", "--file-rows", "20",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    stop, failures = threading.Event(), []
    reader = threading.Thread(
        target=_poll_readers, args=(tmp_path / monitoring.TABLE, stop, failures)
    )
    reader.start()
    try:
        for count in ("1", "4"):  # the first crash comes before any epoch is committed
            env = {**os.environ, "EVENTLAKE_FAULT": f"{moment}:{count}"}
            crashed = subprocess.run([sys.executable, "-m", "flows.cli", *base], env=env,
                                     capture_output=True, text=True, timeout=240)  # fmt: skip
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        finished = eventlake(*base)  # resume without faults
    finally:
        stop.set()
        reader.join()
    assert finished.returncode == 0, finished.stderr
    assert failures == []
    assert not list(tmp_path.rglob(".*.tmp")), "a crash's temporary file was left behind"
    actual = _rows(tmp_path)
    assert len(actual) == len(set(actual)) and actual == _rows(uninterrupted)
