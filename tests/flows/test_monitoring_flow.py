"""The monitoring flow end to end: embedded broker → bytewax → Parquet, against a numpy oracle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest

from flows import monitoring
from flows.runner import run_dataflow
from flows.settings import FlowSettings
from sources.generators import MonitoringGenerator
from sources.producer import ProduceRequest, produce
from sources.progress import Progress
from tests.conftest import Broker
from tests.helpers import eventlake, produce_raw, read_topic

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
    generator = MonitoringGenerator(seed=11, start=datetime(2024, 5, 1, 13, tzinfo=UTC))
    report = produce(generator, broker.target, ProduceRequest(topic, count=EVENTS), Progress("t"))
    assert report.sent == EVENTS
    produce_raw(broker.target, topic, MALFORMED)
    return topic


def oracle(messages: list[tuple[bytes | None, bytes | None]]) -> dict[tuple[str, Any], dict]:
    """Per (service, minute) metrics computed with numpy from the raw messages."""
    events = []
    for _, value in messages:
        try:
            event = json.loads(value or b"")
            np.datetime64(event["ts"].rstrip("Z"), "ms")
            event["service"].encode()  # ts and service are required
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        events.append(event)
    minutes = np.array([e["ts"].rstrip("Z") for e in events], dtype="datetime64[ms]").astype(
        "datetime64[m]"
    )
    services = np.array([e["service"] for e in events])
    latency = np.array([e["latency_ms"] for e in events], dtype=np.float64)
    errors = np.array([e["status"] >= 500 for e in events])
    keys = np.char.add(np.char.add(services, "|"), minutes.astype(str))
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse)
    maxima = np.full(len(unique), -np.inf)
    np.maximum.at(maxima, inverse, latency)
    result = {}
    for index, key in enumerate(unique):
        service, minute = key.split("|")
        result[(service, np.datetime64(minute, "m"))] = {
            "count": int(counts[index]),
            "error_count": int(np.bincount(inverse, weights=errors)[index]),
            "mean_latency_ms": float(np.bincount(inverse, weights=latency)[index] / counts[index]),
            "max_latency_ms": float(maxima[index]),
        }
    return result


def assert_matches_oracle(out: Path, broker: Broker, topic: str) -> None:
    expected = oracle(read_topic(broker.target, topic))
    table = ds.dataset(out / monitoring.TABLE).to_table()
    assert table.schema == monitoring.OUTPUT_SCHEMA
    rows = table.to_pylist()
    actual = {
        (row["service"], np.datetime64(row["window_start"].replace(tzinfo=None), "m")): row
        for row in rows
    }
    assert len(actual) == len(rows), "a (service, minute) window was emitted twice"
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got["count"] == want["count"]
        assert got["error_count"] == want["error_count"]
        assert got["max_latency_ms"] == want["max_latency_ms"]
        assert got["mean_latency_ms"] == pytest.approx(want["mean_latency_ms"], rel=1e-9)
        assert got["window_end"] - got["window_start"] == timedelta(minutes=1)
    dead = ds.dataset(out / "dead_letter").to_table()
    assert sorted(dead["value"].to_pylist()) == sorted(MALFORMED)
    assert sum(row["count"] for row in rows) + dead.num_rows == EVENTS + len(MALFORMED)


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_in_process_matches_oracle(
    broker: Broker, requests_topic: str, tmp_path: Path, workers: int
) -> None:
    settings = FlowSettings(broker.target, requests_topic, tmp_path, bounded=True, workers=workers)
    run_dataflow(monitoring.build_flow(settings), workers)
    assert_matches_oracle(tmp_path, broker, requests_topic)


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


def test_unbounded_run_is_refused_with_the_fix(broker: Broker, requests_topic: str) -> None:
    result = eventlake(
        "run", "monitoring", "--topic", requests_topic, "--brokers", broker.target.bootstrap_servers
    )
    assert result.returncode == 2
    assert "pass --bounded" in result.stderr


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
