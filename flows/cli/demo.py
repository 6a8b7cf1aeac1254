"""``eventlake demo``: the whole pipeline on the embedded broker in one command."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from flows import analytics, monitoring
from flows.cli.commands import produce_command, run_command
from flows.runtime.settings import DemoSettings, FlowSettings, ProduceSettings
from sinks.parquet_files import count_rows
from sources.broker import DEFAULT_TOPICS, EmbeddedBroker
from sources.generators import (
    DEFAULT_EVENT_RATE,
    GENERATORS,
    AnalyticsGenerator,
    MonitoringGenerator,
)
from sources.producer import ProduceRequest

# A fixed start makes the demo's output the same on every run and machine.
DEMO_START = datetime(2024, 5, 1, 12, tzinfo=UTC)
DEMO_EVENT_RATES = {MonitoringGenerator.name: DEFAULT_EVENT_RATE, AnalyticsGenerator.name: 20.0}
"""Events per second of event time: 100,000 analytics events then span 83 minutes,
so hopping hours and 30-minute sessions have something to show."""


def run_demo(settings: DemoSettings) -> None:
    """Start a broker, produce both event kinds, run both flows, print results.

    Everything it starts is stopped before it returns, also on error.
    """
    _step(1, "starting the embedded Kafka broker")
    broker = EmbeddedBroker(topics=DEFAULT_TOPICS)
    with broker as bootstrap:
        print(f"      broker at {bootstrap}")
        target = broker.target
        _step(2, "producing events")
        for generator, count in (
            (MonitoringGenerator, settings.monitoring_events),
            (AnalyticsGenerator, settings.analytics_events),
        ):
            request = ProduceRequest(generator.default_topic, count=count)
            kind_settings = ProduceSettings(
                generator.name,
                request,
                settings.seed,
                DEMO_START,
                event_rate=DEMO_EVENT_RATES[generator.name],
            )
            produce_command(target, kind_settings)
        for step, flow in ((3, monitoring.FLOW), (4, analytics.FLOW)):
            _step(step, f"running the {flow.name} flow (bounded) into Parquet")
            for table in flow.tables:
                shutil.rmtree(settings.out / table, ignore_errors=True)
            flow_settings = FlowSettings(
                target=target, topic=flow.default_topic, out=settings.out, bounded=True
            )
            run_command(flow, flow_settings)
    _step(5, "stopped the broker; results:")
    print(describe_output(settings.out))


def _step(number: int, text: str) -> None:
    print(f"[{number}/5] {text}", flush=True)


def describe_output(out: Path) -> str:
    """Where the demo's files are, a per-service summary, and how to open them."""
    metrics_dir = out / monitoring.TABLE
    metrics = ds.dataset(metrics_dir, format="parquet").to_table()
    tables = dict.fromkeys([*monitoring.TABLES, *analytics.TABLES])
    lines = [
        f"{out / table}/: {count_rows(out / table):,} rows in "
        f"{len(list((out / table).rglob('*.parquet')))} file(s)"
        for table in tables
    ]
    lines += [
        "",
        _service_summary(metrics),
        "",
        "Open it with pyarrow (or pandas, DuckDB, Spark):",
        f'  .venv/bin/python -c "import pyarrow.dataset as ds; '
        f"print(ds.dataset('{metrics_dir}').to_table())\"",
    ]
    return "\n".join(lines)


def _service_summary(metrics: pa.Table) -> str:
    weighted = metrics.append_column(
        "latency_total",
        pc.multiply(metrics["mean_latency_ms"], metrics["count"].cast(pa.float64())),
    )
    per_service = (
        weighted.group_by("service")
        .aggregate(
            [
                ("window_start", "count_distinct"),
                ("count", "sum"),
                ("error_count", "sum"),
                ("latency_total", "sum"),
                ("max_latency_ms", "max"),
            ]
        )
        .sort_by("service")
    )
    header = (
        f"{'service':<12}{'minutes':>8}{'events':>10}{'errors':>9}{'err %':>7}"
        f"{'mean ms':>9}{'max ms':>10}"
    )
    rows = [header]
    for row in per_service.to_pylist():
        events, errors = row["count_sum"], row["error_count_sum"]
        rows.append(
            f"{row['service']:<12}{row['window_start_count_distinct']:>8}{events:>10,}{errors:>9,}"
            f"{100 * errors / events:>7.2f}{row['latency_total_sum'] / events:>9.1f}"
            f"{row['max_latency_ms_max']:>10.1f}"
        )
    return "\n".join(rows)


def demo_events(kind: str, count: int, seed: int = 0) -> pa.Table:
    """The first ``count`` events ``make demo`` produced of ``kind`` (same generator,
    seed and start), with ``ts`` as a UTC timestamp: the raw input, for exact answers."""
    generator = GENERATORS[kind](
        seed=seed, start=DEMO_START, events_per_second=DEMO_EVENT_RATES[kind]
    )
    events = pa.Table.from_pylist(list(islice(generator.events(), count)))
    stamps = pc.cast(events["ts"], pa.timestamp("us", tz="UTC"))
    return events.set_column(events.schema.get_field_index("ts"), "ts", stamps)
