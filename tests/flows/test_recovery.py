"""Crash anywhere, resume, lose nothing, duplicate nothing: real processes, real SIGKILLs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from flows import analytics, monitoring
from flows.registry import resolve_flow
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings
from flows.runtime.supervisor import free_addresses
from sinks.faults import MOMENTS
from sources.generators import AnalyticsGenerator, EventGenerator, MonitoringGenerator
from tests.conftest import Broker
from tests.helpers import cli_process, eventlake, produce_events, run_with_kills


@dataclass(frozen=True)
class CrashCase:
    """A flow under crash test: its input and the output columns that must match exactly."""

    flow: str
    generator: EventGenerator
    events: int
    exact: dict[str, tuple[str, ...]]
    """Per table, the columns compared row for row (sketch-based ones are left out)."""
    batch_size: int
    """Small batches make many epochs; analytics pays per batch for its open sessions."""


START = datetime(2024, 5, 1, 8, tzinfo=UTC)
CASES = {
    "monitoring": CrashCase(
        "monitoring",
        MonitoringGenerator(seed=21, start=START),
        150_000,
        {monitoring.TABLE: ("service", "endpoint", "window_start", "window_end", "count",
                            "error_count", "max_latency_ms")},
        batch_size=300,
    ),
    "analytics": CrashCase(
        "analytics",
        AnalyticsGenerator(seed=22, start=START),
        200_000,
        {analytics.SESSIONS_TABLE: ("user_id", "window_start", "window_end", "count", "views",
                                    "carts", "purchases", "first_event", "last_event"),
         analytics.REVENUE_TABLE: ("category", "window_start", "window_end", "count", "orders",
                                   "units")},
        batch_size=2000,
    ),
}  # fmt: skip
KILLS = 2


@dataclass(frozen=True)
class Prepared:
    """A crash case's topic and the output of one uninterrupted run over it."""

    case: CrashCase
    topic: str
    uninterrupted: Path


@pytest.fixture(scope="module", params=sorted(CASES))
def prepared(
    request: pytest.FixtureRequest, broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Prepared:
    case = CASES[request.param]
    topic = broker.new_topic(f"recovery-{case.flow}", partitions=16)
    produce_events(broker.target, topic, case.generator, case.events)
    out = tmp_path_factory.mktemp(f"uninterrupted-{case.flow}")
    settings = FlowSettings(target=broker.target, topic=topic, out=out, bounded=True)
    run_dataflow(resolve_flow(case.flow).build(settings))
    return Prepared(case, topic, out)


def _rows(case: CrashCase, out: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each compared table as a sorted multiset of its exact columns."""
    tables = {}
    for table, columns in case.exact.items():
        read = ds.dataset(out / table).to_table(columns=list(columns))
        tables[table] = sorted(zip(*(read[c].to_pylist() for c in columns), strict=True))
    return tables


def _assert_exactly_once(prepared: Prepared, out: Path) -> None:
    expected, actual = _rows(prepared.case, prepared.uninterrupted), _rows(prepared.case, out)
    for table, rows in actual.items():
        assert len(rows) == len(set(rows)), f"duplicate rows in {table}"
        assert rows == expected[table], f"{table} differs from the uninterrupted run"


def _command(prepared: Prepared, broker: Broker, tmp_path: Path, interval: str) -> list[str]:
    return ["run", prepared.case.flow, "--bounded", "--final", "--topic", prepared.topic,
            "--out", str(tmp_path / "out"), "--recovery-dir", str(tmp_path / "recovery"),
            "--snapshot-interval", interval, "--batch-size", str(prepared.case.batch_size),
            "--file-rows", "20",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip


def _run_as_processes(command: list[str], count: int) -> list[str]:
    """Run ``command`` as ``count`` cooperating processes (``-i``/``-a``); their stderr."""
    addresses = ";".join(free_addresses(count))
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(
                cli_process(*command, "-i", str(index), "-a", addresses, stderr=subprocess.PIPE)
            )
            for index in range(count)
        ]
        outcomes = [process.communicate(timeout=240) for process in processes]
    stderrs = [stderr for _, stderr in outcomes]
    assert [process.returncode for process in processes] == [0] * count, "\n".join(stderrs)
    return stderrs


RESUMES = {"1 worker": ("--workers", "1"), "2 workers": ("--workers", "2"), "2 processes": ()}


@pytest.mark.parametrize(
    ("prepared", "resume"),
    [("monitoring", "2 workers"), ("monitoring", "2 processes"),
     ("analytics", "1 worker"), ("analytics", "2 processes")],
    indirect=["prepared"],
)  # fmt: skip
def test_sigkilled_runs_resume_to_exactly_the_uninterrupted_output(
    broker: Broker, prepared: Prepared, tmp_path: Path, resume: str
) -> None:
    command = _command(prepared, broker, tmp_path, "0.5s")
    run_with_kills(command, KILLS, seed=len(resume))
    if resume == "2 processes":
        resumed = "\n".join(_run_as_processes(command, 2))
    else:
        finished = eventlake(*command, *RESUMES[resume])
        assert finished.returncode == 0, finished.stderr
        resumed = finished.stderr
    assert "resuming from epoch" in resumed
    _assert_exactly_once(prepared, tmp_path / "out")

    compacted = _compact_every_table(prepared, tmp_path / "out")
    assert "left" not in compacted, "a finished run has committed every file"
    again = eventlake(*command)
    assert again.returncode == 0 and "already complete" in again.stderr
    _assert_exactly_once(prepared, tmp_path / "out")


def _compact_every_table(prepared: Prepared, out: Path) -> str:
    """``eventlake compact`` on each table of the flow; their stderr, joined."""
    outputs = []
    for table in resolve_flow(prepared.case.flow).tables:
        compacted = eventlake("compact", str(out / table))
        assert compacted.returncode == 0, compacted.stderr
        outputs.append(compacted.stderr)
    return "\n".join(outputs)


def _poll_readers(table_dir: Path, stop: threading.Event, failures: list[str]) -> None:
    """Read the table over and over, as a notebook would, recording partial-file failures.

    A file listed just before compaction swaps its directory can vanish before it
    is opened: readers retry that. What must never happen is reading a partial file.
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
def test_crash_at_each_commit_moment_then_compaction_then_resume_is_exactly_once(
    broker: Broker, prepared: Prepared, tmp_path: Path, moment: str
) -> None:
    command = _command(prepared, broker, tmp_path, "0.3s")
    table_dir = tmp_path / "out" / next(iter(prepared.case.exact))
    stop, failures = threading.Event(), []
    reader = threading.Thread(target=_poll_readers, args=(table_dir, stop, failures))
    reader.start()
    try:
        # A first crash while writing comes before any epoch is committed. Files are
        # published once committed, often all at the end of the run: that crashes once.
        counts = ("1",) if moment == "after_publish" else ("1", "2")
        for count in counts:
            env = {**os.environ, "EVENTLAKE_FAULT": f"{moment}:{count}"}
            crashed = subprocess.run([sys.executable, "-m", "flows.cli", *command], env=env,
                                     capture_output=True, text=True, timeout=240)  # fmt: skip
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        compacted = _compact_every_table(prepared, tmp_path / "out")
        finished = eventlake(*command)  # resume without faults
    finally:
        stop.set()
        reader.join()
    if moment == "after_rename":  # the file renamed just before the crash is not committed
        assert "left" in compacted
    assert finished.returncode == 0, finished.stderr
    assert failures == []
    assert not list(tmp_path.rglob(".*.tmp")), "a crash's temporary file was left behind"
    _assert_exactly_once(prepared, tmp_path / "out")
