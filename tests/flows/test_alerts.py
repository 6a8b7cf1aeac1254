"""Alert rules on hand-built closed windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from flows.alerts import ALERT_SCHEMA, AlertRules, Baselines, evaluate

RULES = AlertRules(max_error_rate=0.1, p99_slo_ms=500.0, zscore=3.0, history=5, min_history=3)
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def windows(rows: list[tuple[int, int, float, float]]) -> pa.Table:
    """(minute, count, error_rate, p99) for service a, endpoint /x."""
    return pa.Table.from_pylist(
        [
            {
                "service": "a",
                "endpoint": "/x",
                "window_start": T0 + timedelta(minutes=m),
                "window_end": T0 + timedelta(minutes=m + 1),
                "count": count,
                "error_rate": rate,
                "p99_latency_ms": p99,
            }
            for m, count, rate, p99 in rows
        ]
    )


def fired(alerts: pa.Table) -> list[tuple[int, str]]:
    return [
        (int((row["window_start"] - T0).total_seconds() // 60), row["rule"])
        for row in alerts.to_pylist()
    ]


def test_threshold_rules_fire_above_their_thresholds_only() -> None:
    alerts = evaluate(RULES, Baselines(), windows([(0, 100, 0.1, 500.0), (1, 100, 0.11, 501.0)]))
    assert alerts.schema == ALERT_SCHEMA
    assert fired(alerts) == [(1, "error_rate"), (1, "p99_slo")]
    row: dict[str, Any] = alerts.to_pylist()[0]
    assert row["observed"] == 0.11 and row["threshold"] == 0.1


def test_anomaly_against_the_keys_trailing_windows() -> None:
    baselines = Baselines()
    steady = [(m, 100 + (m % 2) * 4, 0.0, 100.0 + m % 3) for m in range(5)]
    assert fired(evaluate(RULES, baselines, windows(steady))) == []
    spike = evaluate(RULES, baselines, windows([(5, 400, 0.0, 101.0), (6, 102, 0.0, 300.0)]))
    assert fired(spike) == [(5, "traffic_anomaly"), (6, "latency_anomaly")]
    first = spike.to_pylist()[0]
    assert first["baseline_mean"] == 101.6 and first["observed"] == 400


def test_no_anomaly_before_enough_history() -> None:
    assert fired(evaluate(RULES, Baselines(), windows([(0, 10, 0, 1.0), (1, 1000, 0, 1.0)]))) == []
