"""`eventlake aggregate` over generated events: every window type against a numpy oracle."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest

from flows.pipelines.config import PipelineConfig, aggregation_config, window_spec
from flows.pipelines.flow import WINDOWS_TABLE, pipeline_flow
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings
from sinks.parquet_files import count_rows
from sinks.recovery_store import resume_epoch
from sources.generators import MonitoringGenerator
from tests.conftest import Broker
from tests.flows import oracle
from tests.helpers import children_of, cli_process, eventlake, produce_events, read_topic

EVENTS = 12_000
AGGS = ["count", "sum", "mean", "min", "max", "stddev", "p50", "p99", "distinct:region",
        "topk:region:3"]  # fmt: skip
WINDOWS = {
    "tumbling": ((60.0, None, None), "service"),
    "hopping": ((120.0, 30.0, None), "service"),
    "session": ((None, None, 0.5), "endpoint"),
}


@pytest.fixture(scope="module")
def topic(broker: Broker) -> str:
    """Monitoring events, 5% of them up to 3 s out of order (inside the 5 s lateness)."""
    name = broker.new_topic("aggregate", partitions=4)
    start = datetime(2024, 5, 1, 13, tzinfo=UTC)
    generator = MonitoringGenerator(seed=5, start=start, events_per_second=40.0)
    produce_events(broker.target, name, generator, EVENTS)
    return name


@pytest.fixture(scope="module")
def events(broker: Broker, topic: str) -> list[dict[str, Any]]:
    return oracle.parse_events(read_topic(broker.target, topic), ())


def pipeline(topic: str, window: str) -> PipelineConfig:
    durations, key = WINDOWS[window]
    table = aggregation_config(WINDOWS_TABLE, [key], ["latency_ms"], AGGS, window_spec(*durations))
    return PipelineConfig(topic, "ts", (table,))


def expected_groups(events: list[dict[str, Any]], window: str) -> dict[tuple[Any, ...], Any]:
    (size_s, slide_s, gap_s), key = WINDOWS[window]
    if window == "tumbling":
        return oracle.tumbling(events, (key,), round(size_s * 1e6))
    if window == "hopping":
        return oracle.hopping(events, (key,), round(size_s * 1e6), round(slide_s * 1e6))
    return oracle.sessions(events, key, round(gap_s * 1e6))


def assert_windows_match(out: Path, events: list[dict[str, Any]], window: str) -> None:
    key = WINDOWS[window][1]
    rows = ds.dataset(out / WINDOWS_TABLE).to_table().to_pylist()
    got = oracle.by_key(rows, lambda row: (row[key], oracle.micros(row["window_start"])))
    expected = expected_groups(events, window)
    assert set(got) == set(expected)
    for group, members in expected.items():
        row, latency = got[group], np.array([e["latency_ms"] for e in members])
        assert row["count"] == len(members) and row["invalid_values"] == 0
        assert row["sum_latency_ms"] == pytest.approx(latency.sum(), rel=1e-9)
        assert row["mean_latency_ms"] == pytest.approx(latency.mean(), rel=1e-9)
        assert (row["min_latency_ms"], row["max_latency_ms"]) == (latency.min(), latency.max())
        if len(latency) > 1:
            assert row["stddev_latency_ms"] == pytest.approx(latency.std(ddof=1), rel=1e-9)
        oracle.assert_quantile(list(latency), 0.5, row["p50_latency_ms"])
        oracle.assert_quantile(list(latency), 0.99, row["p99_latency_ms"])
        regions = Counter(e["region"] for e in members)
        assert row["distinct_region"] == pytest.approx(len(regions), rel=0.03)
        top = sorted(regions.items(), key=lambda item: (-item[1], item[0]))[:3]
        assert [(t["item"], t["count"]) for t in row["topk_region"]] == top
        if window == "session":
            end = max(e["_us"] for e in members) + round(WINDOWS[window][0][2] * 1e6)
            assert oracle.micros(row["window_end"]) == end


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_windows_equal_the_batch_oracle(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path, window: str
) -> None:
    flow = pipeline_flow(pipeline(topic, window))
    run_dataflow(
        flow.build(FlowSettings(target=broker.target, topic=topic, out=tmp_path, bounded=True))
    )
    assert_windows_match(tmp_path, events, window)
    assert count_rows(tmp_path / "late") == count_rows(tmp_path / "dead_letter") == 0


def test_the_command_writes_windows_late_and_dead_letters(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    done = eventlake(
        "aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
        "--value", "latency_ms", "--window", "2m", "--slide", "30s", "--agg", ",".join(AGGS),
        "--out", str(tmp_path), "--bounded", "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_windows_match(tmp_path, events, "hopping")
    read = ds.dataset(tmp_path / WINDOWS_TABLE, partitioning="hive").to_table()
    assert read.schema.field("window_start").type == read.schema.field("window_end").type
    assert str(read.schema.field("window_start").type) == "timestamp[us, tz=UTC]"


PIPELINE = """
topic = "{topic}"
time_field = "ts"
lateness = "5s"

[[aggregation]]
table = "latency"
key = ["service"]
value = ["latency_ms"]
window = "1m"
agg = ["count", "mean"]

[[aggregation]]
table = "errors"
key = ["service", "endpoint"]
window = "1m"
filter = "status >= 500 and region != 'nowhere'"
"""


def test_a_pipeline_file_writes_one_table_per_aggregation(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE.format(topic=topic))
    checked = eventlake("validate", str(path))
    assert checked.returncode == 0 and "writes latency, errors" in checked.stdout

    done = eventlake("run", str(path), "--out", str(tmp_path / "out"), "--bounded",
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip

    assert done.returncode == 0, done.stderr
    minute = 60_000_000
    latency = ds.dataset(tmp_path / "out" / "latency").to_table().to_pylist()
    got = {(r["service"], oracle.micros(r["window_start"])): r for r in latency}
    expected = oracle.tumbling(events, ("service",), minute)
    assert {k: got[k]["count"] for k in got} == {k: len(v) for k, v in expected.items()}
    errors = [e for e in events if e["status"] >= 500]
    rows = ds.dataset(tmp_path / "out" / "errors").to_table().to_pylist()
    counted = {
        (r["service"], r["endpoint"], oracle.micros(r["window_start"])): r["count"] for r in rows
    }
    expected_errors = oracle.tumbling(errors, ("service", "endpoint"), minute)
    assert counted == {k: len(v) for k, v in expected_errors.items()} and counted


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_an_unbounded_run_cleanly_and_the_rerun_resumes_it(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path, signum: int
) -> None:
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--value", "latency_ms", "--window", "1m", "--agg", ",".join(AGGS),
               "--out", str(tmp_path), "--recovery-dir", str(tmp_path / "recovery"),
               "--snapshot-interval", "0.3s",
               "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    with cli_process(*command, stderr=subprocess.PIPE) as running:
        deadline = time.monotonic() + 60
        while (resume_epoch(tmp_path / "recovery") or 0) < 3 and running.poll() is None:
            assert time.monotonic() < deadline, "no snapshot was committed"
            time.sleep(0.05)
        running.send_signal(signum)
        _, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    assert "stopped on request with every buffered row written" in stderr
    compacted = eventlake("compact", str(tmp_path / WINDOWS_TABLE))
    assert compacted.returncode == 0 and "left" not in compacted.stderr, "all rows committed"

    resumed = eventlake(*command, "--bounded", "--final")

    assert resumed.returncode == 0 and "resuming from epoch" in resumed.stderr
    assert_windows_match(tmp_path, events, "tumbling")


def test_processes_2_run_one_cluster_equal_to_the_batch_oracle(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    done = eventlake(*_hopping_command(broker, topic, tmp_path), "--bounded", "--processes", "2")
    assert done.returncode == 0, done.stderr
    assert "starting 2 processes of one run" in done.stderr
    assert f"run aggregate: {EVENTS:,}/{EVENTS:,} events" in done.stderr, "one line for both"
    assert_windows_match(tmp_path, events, "hopping")


def test_a_supervised_run_stops_whole_on_a_signal_or_a_dead_process_and_resumes(
    broker: Broker, topic: str, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    recovery = ["--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.3s"]
    command = [*_hopping_command(broker, topic, tmp_path), "--processes", "2", *recovery]
    with cli_process(*command, stderr=subprocess.PIPE) as supervisor:
        _wait_for_epoch(tmp_path / "recovery", 3, supervisor)
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert "stopped on request with every buffered row written" in stderr

    with cli_process(*command, stderr=subprocess.PIPE) as supervisor:
        _wait_for_epoch(tmp_path / "recovery", (resume_epoch(tmp_path / "recovery") or 0) + 2,
                        supervisor)  # fmt: skip
        victim = children_of(supervisor.pid)[-1]
        os.kill(victim, signal.SIGKILL)
        _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 1, stderr
    assert f"(pid {victim}) was killed by SIGKILL; the others were stopped" in stderr
    assert not children_of(supervisor.pid)

    resumed = eventlake(*command, "--bounded", "--final")
    assert resumed.returncode == 0 and "resuming from epoch" in resumed.stderr
    assert_windows_match(tmp_path, events, "hopping")


def _hopping_command(broker: Broker, topic: str, out: Path) -> list[str]:
    return ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
            "--value", "latency_ms", "--window", "2m", "--slide", "30s",
            "--agg", ",".join(AGGS), "--out", str(out),
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip


def _wait_for_epoch(recovery_dir: Path, epoch: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while (resume_epoch(recovery_dir) or 0) < epoch:
        assert process.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "no snapshot was committed"
        time.sleep(0.05)
