"""The monitoring flow: request metrics per (service, endpoint) and window, and alerts.

Tables: ``service_metrics`` (tumbling windows, default 1 minute: count, 5xx
count and rate, mean/p50/p95/p99/max latency with the KLL sketch) and
``alerts`` (see :mod:`flows.alerts`), plus ``late`` and ``dead_letter``.
"""

from __future__ import annotations

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow

from common.metrics import RunMetrics
from common.units import micros
from flows.alerts import ALERT_SCHEMA, AlertRules, Baselines, evaluate
from flows.engine.aggregations import Count, Quantiles, Stat
from flows.engine.tables import TableSpec
from flows.engine.windows import Tumbling
from flows.runtime.dataflow import KAFKA_TO_PARQUET, SHARED_TABLES, FlowIO, build_pipeline
from flows.runtime.flow import Flow
from flows.runtime.settings import FlowSettings
from sources.decode import JsonDecoder
from sources.generators import MonitoringGenerator

DEFAULT_TOPIC = MonitoringGenerator.default_topic
TABLE = "service_metrics"
ALERTS_TABLE = "alerts"
TABLES = (TABLE, ALERTS_TABLE, *SHARED_TABLES)
DEFAULT_WINDOW_S = 60.0
ERROR_STATUS = 500

EVENT_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("service", pa.string()),
        ("endpoint", pa.string()),
        ("region", pa.string()),
        ("status", pa.int64()),
        ("latency_ms", pa.float64()),
        ("trace_id", pa.string()),
    ]
)
DECODER = JsonDecoder(EVENT_SCHEMA, "ts", required=("service",))


def _with_errors(events: pa.Table) -> pa.Table:
    is_error = pc.greater_equal(events["status"], ERROR_STATUS).cast(pa.int64())
    return events.append_column("is_error", is_error)


def _with_error_rate(windows: pa.Table) -> pa.Table:
    rate = pc.divide(windows["error_count"].cast(pa.float64()), windows["count"].cast(pa.float64()))
    return windows.append_column("error_rate", rate)


def metrics_spec(window_s: float) -> TableSpec:
    """``service_metrics``: one row per (service, endpoint) and tumbling window."""
    return TableSpec(
        name=TABLE,
        keys=("service", "endpoint"),
        window=Tumbling(micros(window_s)),
        aggregations=(
            Count(),
            Stat("sum", "is_error", "error_count", output_type=pa.int64()),
            Stat("mean", "latency_ms"),
            Quantiles("latency_ms", (0.5, 0.95, 0.99)),
            Stat("max", "latency_ms"),
        ),
        event_schema=EVENT_SCHEMA,
        derive=_with_errors,
        finish=_with_error_rate,
    )


def build_flow(
    settings: FlowSettings, metrics: RunMetrics | None = None, io: FlowIO = KAFKA_TO_PARQUET
) -> Dataflow:
    """The monitoring dataflow, writing its :data:`TABLES` under ``settings.out``."""
    spec = metrics_spec(settings.window_s or DEFAULT_WINDOW_S)
    pipeline = build_pipeline("monitoring", settings, DECODER, [spec], metrics, io)
    rules = AlertRules()

    def alert(baselines: Baselines | None, windows: pa.Table) -> tuple[Baselines, pa.Table]:
        baselines = baselines or Baselines()
        return baselines, evaluate(rules, baselines, windows)

    alerts = op.stateful_map("evaluate_alerts", pipeline.tables[TABLE].rows, alert)
    pipeline.write(ALERTS_TABLE, alerts, ALERT_SCHEMA)
    return pipeline.flow


FLOW = Flow("monitoring", DEFAULT_TOPIC, TABLES, build_flow)
"""The monitoring flow, as ``eventlake run monitoring`` finds it."""
