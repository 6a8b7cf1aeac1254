"""The notebook helpers against exact answers from the raw events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from flows.cli.demo import demo_events
from sinks.explore import (
    averaged_percentiles,
    load_table,
    output_dir,
    rollup_distinct,
    rollup_quantiles,
)
from tests.conftest import DEMO_ANALYTICS_EVENTS, DEMO_MONITORING_EVENTS
from tests.flows import oracle

HOUR = 3600.0


def test_output_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTLAKE_OUT", "/data/run-7")
    assert output_dir() == Path("/data/run-7")


def test_demo_events_are_the_events_the_demo_aggregated(demo_output: Path) -> None:
    metrics = load_table("service_metrics", demo_output)
    events = demo_events("monitoring", DEMO_MONITORING_EVENTS)
    assert pc.sum(metrics["count"]).as_py() == events.num_rows
    summed: Counter[str] = Counter()
    for row in metrics.to_pylist():
        summed[row["service"]] += row["count"]
    assert Counter(events["service"].to_pylist()) == summed


def test_merged_sketches_give_the_hourly_quantile(demo_output: Path) -> None:
    metrics = load_table("service_metrics", demo_output)
    events = demo_events("monitoring", DEMO_MONITORING_EVENTS)
    merged = rollup_quantiles(metrics, ["service"], "sketch_latency_ms", HOUR, [0.5, 0.99])
    averaged = averaged_percentiles(metrics, ["service"], ["p99_latency_ms"], HOUR)
    hours = pc.floor_temporal(events["ts"], unit="hour")
    for row, naive in zip(merged.to_pylist(), averaged.to_pylist(), strict=True):
        mask = pc.and_(pc.equal(events["service"], row["service"]),
                       pc.equal(hours, row["window_start"]))  # fmt: skip
        latency = events.filter(mask)["latency_ms"].to_numpy()
        assert row["count"] == len(latency)
        oracle.assert_quantile(list(latency), 0.5, row["p50"])
        oracle.assert_quantile(list(latency), 0.99, row["p99"])
        minutes = [r["p99_latency_ms"] for r in metrics.to_pylist()
                   if r["service"] == row["service"]
                   and r["window_start"].replace(minute=0) == row["window_start"]]  # fmt: skip
        assert naive["p99_latency_ms"] == pytest.approx(np.mean(minutes), rel=1e-12)


def test_hll_unions_count_distinct_users_over_overlapping_windows(demo_output: Path) -> None:
    revenue = load_table("category_revenue", demo_output)
    shop = demo_events("analytics", DEMO_ANALYTICS_EVENTS)
    estimated = rollup_distinct(revenue, ["category"], "hll_user_id", 365 * 24 * HOUR)
    for row in estimated.to_pylist():
        users = shop.filter(pc.equal(shop["category"], row["category"]))["user_id"]
        assert row["distinct"] == pytest.approx(len(np.unique(users.to_numpy())), rel=0.05)
