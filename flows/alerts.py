"""Alert rules over closed monitoring windows, with per-key trailing baselines.

Three rules: the error rate above a threshold, p99 latency above an SLO, and an
anomaly: a window's request count or p99 latency more than ``zscore``
standard deviations from the key's last ``history`` closed windows.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from common.units import UTC_MICROS

ALERT_SCHEMA = pa.schema(
    [
        ("service", pa.string()),
        ("endpoint", pa.string()),
        ("window_start", UTC_MICROS),
        ("window_end", UTC_MICROS),
        ("rule", pa.string()),
        ("observed", pa.float64()),
        ("threshold", pa.float64()),
        ("baseline_mean", pa.float64()),
        ("baseline_stddev", pa.float64()),
    ]
)


@dataclass(frozen=True)
class AlertRules:
    """Thresholds of the alert rules."""

    max_error_rate: float = 0.05
    """Alert when more than this fraction of a window's requests are 5xx."""
    p99_slo_ms: float = 1000.0
    """Alert when a window's p99 latency is above this."""
    zscore: float = 3.0
    """Alert when count or p99 is this many standard deviations from the baseline."""
    history: int = 10
    """Closed windows per key that form the baseline."""
    min_history: int = 5
    """No anomaly alerts before a key has this many closed windows."""


@dataclass
class Baselines:
    """Per (service, endpoint): counts and p99s of its last closed windows."""

    counts: dict[tuple[Any, ...], deque[float]] = field(default_factory=dict)
    p99s: dict[tuple[Any, ...], deque[float]] = field(default_factory=dict)


def evaluate(rules: AlertRules, baselines: Baselines, windows: pa.Table) -> pa.Table:
    """Alert rows (:data:`ALERT_SCHEMA`) for closed windows, oldest first; updates baselines."""
    alerts: list[dict[str, Any]] = []
    for row in windows.sort_by([("window_end", "ascending")]).to_pylist():
        key = (row["service"], row["endpoint"])
        found = _threshold_alerts(rules, row)
        found += _anomaly(rules, "traffic_anomaly", row["count"], baselines.counts, key)
        if row["p99_latency_ms"] is not None:
            found += _anomaly(rules, "latency_anomaly", row["p99_latency_ms"], baselines.p99s, key)
        window = {name: row[name] for name in ("service", "endpoint", "window_start", "window_end")}
        alerts += [{**window, **alert} for alert in found]
    return pa.Table.from_pylist(alerts, schema=ALERT_SCHEMA)


def _threshold_alerts(rules: AlertRules, row: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    if row["error_rate"] is not None and row["error_rate"] > rules.max_error_rate:
        found.append({"rule": "error_rate", "observed": row["error_rate"],
                      "threshold": rules.max_error_rate})  # fmt: skip
    p99 = row["p99_latency_ms"]
    if p99 is not None and p99 > rules.p99_slo_ms:
        found.append({"rule": "p99_slo", "observed": p99, "threshold": rules.p99_slo_ms})
    return found


def _anomaly(
    rules: AlertRules,
    rule: str,
    observed: float,
    histories: dict[tuple[Any, ...], deque[float]],
    key: tuple[Any, ...],
) -> list[dict[str, Any]]:
    """An anomaly alert if ``observed`` is far from the key's history; then remember it."""
    history = histories.setdefault(key, deque(maxlen=rules.history))
    found = []
    if len(history) >= rules.min_history:
        mean, stddev = float(np.mean(history)), float(np.std(history, ddof=1))
        if stddev > 0:
            distance = abs(observed - mean) / stddev
        else:
            distance = 0.0 if observed == mean else math.inf
        if distance > rules.zscore:
            found.append({"rule": rule, "observed": float(observed), "threshold": rules.zscore,
                          "baseline_mean": mean, "baseline_stddev": stddev})  # fmt: skip
    history.append(float(observed))
    return found
