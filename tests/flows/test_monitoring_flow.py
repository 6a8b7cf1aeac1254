"""The monitoring flow against a numpy oracle: on a testing source, and end to end (embedded
broker → bytewax → Parquet)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest
from bytewax.testing import cluster_main, run_main

from flows import monitoring
from flows.alerts import AlertRules
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings
from sources.generators import MonitoringGenerator
from sources.target import KafkaTarget
from tests.conftest import Broker
from tests.flows import oracle
from tests.flows.testing_io import generated, memory_io
from tests.helpers import cli_process, eventlake, produce_events, produce_raw, read_topic

EVENTS = 20_000
MALFORMED = [
    b"{not json",
    b"[]",
    b'{"service": "no-ts"}',
    b"\xff\xff",
    b'{"ts": "noon"}',
    b'{"ts": "2024-05-01T13:00:00Z", "user_id": "an analytics event: no service"}',
]


@pytest.fixture(scope="module")
def requests_topic(broker: Broker) -> str:
    """A topic with seeded monitoring events plus a few malformed messages."""
    topic = broker.new_topic("monitoring-flow", partitions=4)
    produce_events(broker.target, topic, _generator(), EVENTS)
    produce_raw(broker.target, topic, MALFORMED)
    return topic


def assert_matches_oracle(out: Path, broker: Broker, topic: str) -> None:
    rows = assert_windows_match(out, read_topic(broker.target, topic))
    dead = ds.dataset(out / "dead_letter").to_table()
    assert sorted(dead["value"].to_pylist()) == sorted(MALFORMED)
    late_rows = ds.dataset(out / "late").count_rows() if (out / "late").exists() else 0
    assert sum(row["count"] for row in rows) + late_rows + dead.num_rows == EVENTS + len(MALFORMED)


def assert_windows_match(
    out: Path, messages: list[tuple[bytes | None, bytes | None]]
) -> list[dict[str, Any]]:
    """``service_metrics`` and threshold alerts equal the oracle's; the window rows."""
    events = oracle.parse_events(messages, ("service",))
    expected = oracle.tumbling(events, ("service", "endpoint"), 60 * oracle.MICROS_PER_S)
    spec = monitoring.metrics_spec(60.0)
    table = ds.dataset(out / monitoring.TABLE).to_table()
    assert table.schema == spec.output_schema()
    rows = table.to_pylist()
    actual = oracle.by_key(
        rows, lambda r: (r["service"], r["endpoint"], oracle.micros(r["window_start"]))
    )
    assert set(actual) == set(expected)
    for key, members in expected.items():
        got = actual[key]
        latency = [e["latency_ms"] for e in members]
        errors = sum(e["status"] >= 500 for e in members)
        assert got["count"] == len(members)
        assert got["error_count"] == errors
        assert got["error_rate"] == pytest.approx(errors / len(members), rel=1e-12)
        assert got["max_latency_ms"] == max(latency)
        assert got["mean_latency_ms"] == pytest.approx(float(np.mean(latency)), rel=1e-9)
        for quantile in (0.5, 0.95, 0.99):
            label = f"p{round(quantile * 100)}_latency_ms"
            oracle.assert_quantile(latency, quantile, got[label])
        assert got["window_end"] - got["window_start"] == timedelta(minutes=1)
    assert_alerts_match(out, rows)
    return rows


def assert_alerts_match(out: Path, windows: list[dict[str, Any]]) -> None:
    """Threshold alerts fire exactly for the windows over their thresholds."""
    rules = AlertRules()
    alerts = ds.dataset(out / "alerts").to_table().to_pylist() if (out / "alerts").exists() else []
    fired = {(a["service"], a["endpoint"], a["window_start"], a["rule"]) for a in alerts}
    for window in windows:
        key = (window["service"], window["endpoint"], window["window_start"])
        assert ((*key, "error_rate") in fired) == (window["error_rate"] > rules.max_error_rate)
        assert ((*key, "p99_slo") in fired) == (window["p99_latency_ms"] > rules.p99_slo_ms)
    assert any(a["rule"] == "error_rate" and a["service"] == "payments" for a in alerts)


def _generator() -> MonitoringGenerator:
    return MonitoringGenerator(
        seed=11, start=datetime(2024, 5, 1, 13, tzinfo=UTC), events_per_second=40.0
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_on_a_testing_source_matches_oracle(tmp_path: Path, workers: int) -> None:
    """No broker: the dataflow under bytewax's run_main, or cluster_main with 2 workers."""
    partitions = generated(_generator(), EVENTS, 4)
    for index, value in enumerate(MALFORMED):
        partitions[index % 4].append(value)
    settings = FlowSettings(
        target=KafkaTarget("unused:9092"), topic="testing", out=tmp_path, bounded=True
    )
    flow = monitoring.build_flow(settings, io=memory_io(partitions))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    rows = assert_windows_match(tmp_path, [(None, value) for part in partitions for value in part])
    dead = ds.dataset(tmp_path / "dead_letter").to_table()
    assert sorted(dead["value"].to_pylist()) == sorted(MALFORMED)
    assert sum(row["count"] for row in rows) == EVENTS


def test_cli_run_as_os_process_matches_oracle(
    broker: Broker, requests_topic: str, tmp_path: Path
) -> None:
    result = eventlake(
        "run", "monitoring", "--bounded", "--workers", "2", "--topic", requests_topic,
        "--out", str(tmp_path), "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{EVENTS + len(MALFORMED):,}/{EVENTS + len(MALFORMED):,} events" in result.stderr
    assert_matches_oracle(tmp_path, broker, requests_topic)


def _run_until_windows_appear(args: list[str], table_dir: Path, failure: str) -> None:
    """Run ``eventlake run monitoring ARGS`` unbounded until a file appears, then stop it."""
    with cli_process("run", "monitoring", *args, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 120
        while not list(table_dir.rglob("*.parquet")):
            assert process.poll() is None, "the unbounded run ended by itself"
            assert time.monotonic() < deadline, failure
            time.sleep(0.2)
        process.terminate()


def test_unbounded_run_emits_closed_windows_while_running(
    broker: Broker, requests_topic: str, tmp_path: Path
) -> None:
    args = ["--topic", requests_topic, "--out", str(tmp_path), "--file-max-age", "1s",
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    _run_until_windows_appear(args, tmp_path / monitoring.TABLE, "no window was emitted")
    events = oracle.parse_events(read_topic(broker.target, requests_topic), ("service",))
    expected = oracle.tumbling(events, ("service", "endpoint"), 60 * oracle.MICROS_PER_S)
    rows = ds.dataset(tmp_path / monitoring.TABLE).to_table().to_pylist()
    newest = max(e["_us"] for e in events)
    for row in rows:  # emitted windows are complete, and closed by the watermark
        key = (row["service"], row["endpoint"], oracle.micros(row["window_start"]))
        assert row["count"] == len(expected[key])
        assert oracle.micros(row["window_end"]) <= newest - 5 * oracle.MICROS_PER_S


def test_unknown_flow_lists_the_known_ones(broker: Broker) -> None:
    result = eventlake("run", "billing", "--brokers", broker.target.bootstrap_servers)
    assert result.returncode == 2
    assert "unknown flow 'billing'" in result.stderr and "monitoring" in result.stderr


def test_missing_topic_fails_before_starting(broker: Broker, tmp_path: Path) -> None:
    result = eventlake(
        "run", "monitoring", "--bounded", "--topic", "no-such-topic", "--out", str(tmp_path),
        "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not any(tmp_path.iterdir())


def test_rerun_into_same_output_is_refused(
    broker: Broker, requests_topic: str, tmp_path: Path
) -> None:
    args = ["run", "monitoring", "--bounded", "--topic", requests_topic, "--out", str(tmp_path),
            "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    assert eventlake(*args).returncode == 0
    files_before = sorted(tmp_path.rglob("*.parquet"))

    again = eventlake(*args)

    assert again.returncode == 2
    assert "already holds" in again.stderr and "--out" in again.stderr
    assert sorted(tmp_path.rglob("*.parquet")) == files_before


def test_idle_timeout_lets_empty_partitions_stop_holding_the_watermark(
    broker: Broker, tmp_path: Path
) -> None:
    topic = broker.new_topic("monitoring-idle", partitions=20)  # 5 services: most stay empty
    generator = MonitoringGenerator(seed=3, start=datetime(2024, 5, 1, 13, tzinfo=UTC))
    produce_events(broker.target, topic, generator, 5_000)
    args = ["--topic", topic, "--out", str(tmp_path), "--idle-timeout", "1s",
            "--file-max-age", "1s", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    _run_until_windows_appear(
        args, tmp_path / monitoring.TABLE, "empty partitions held the watermark back"
    )
    assert ds.dataset(tmp_path / monitoring.TABLE).count_rows() > 0


def _request(second: int, trace: str) -> bytes:
    ts = (datetime(2024, 5, 1, 13, tzinfo=UTC) + timedelta(seconds=second)).isoformat()
    event = {"ts": ts.replace("+00:00", "Z"), "service": "svc", "endpoint": "/x", "region": "eu",
             "status": 200, "latency_ms": 1.0, "trace_id": trace}  # fmt: skip
    return json.dumps(event).encode()


def test_events_beyond_the_lateness_go_to_the_late_table(broker: Broker, tmp_path: Path) -> None:
    topic = broker.new_topic("monitoring-late", partitions=1)
    seconds = [*range(0, 200, 10), 10, 30, 250, 59, 300]  # 10, 30 and 59 arrive after 190
    produce_raw(broker.target, topic, [_request(s, f"t{i}") for i, s in enumerate(seconds)])
    # Batches of 5: the watermark advances between them, as in a live stream.
    settings = FlowSettings(
        target=broker.target, topic=topic, out=tmp_path, bounded=True, batch_size=5
    )
    run_dataflow(monitoring.build_flow(settings), 1)

    late = ds.dataset(tmp_path / "late").to_table().to_pylist()
    assert sorted(row["trace_id"] for row in late) == ["t20", "t21", "t23"]
    assert all(row["window_end"].timestamp() <= row["watermark"].timestamp() for row in late)
    assert {row["table"] for row in late} == {monitoring.TABLE}
    windows = ds.dataset(tmp_path / monitoring.TABLE).to_table().to_pylist()
    first = next(w for w in windows if w["window_start"].minute == 0)
    assert first["count"] == 6  # 0..50 only: the late ones were not merged
    assert sum(w["count"] for w in windows) + len(late) == len(seconds)
