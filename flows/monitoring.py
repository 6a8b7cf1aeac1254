"""The monitoring flow: per-service, per-minute request metrics.

Each batch of request events is pre-aggregated per (service, minute) with
Arrow, routed by service to a shard, and merged there; at the end of a
bounded run every shard emits its windows as one table.
"""

from __future__ import annotations

import zlib
from datetime import timedelta

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow

from flows.settings import FlowSettings
from sinks.parquet_files import ParquetDirectorySink
from sources.decode import DEAD_LETTER_SCHEMA, DEAD_LETTER_TABLE, DecodedBatch, JsonDecoder
from sources.errors import ConfigError
from sources.generators import MonitoringGenerator
from sources.kafka_source import KafkaBatchSource
from sources.progress import Progress

DEFAULT_TOPIC = MonitoringGenerator.default_topic
TABLE = "service_metrics"
WINDOW = timedelta(minutes=1)
SHARDS = 64
ERROR_STATUS = 500

EVENT_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("service", pa.string()),
        ("endpoint", pa.string()),
        ("region", pa.string()),
        ("status", pa.int64()),
        ("latency_ms", pa.float64()),
        ("trace_id", pa.string()),
    ]
)
UTC_MICROS = pa.timestamp("us", tz="UTC")
OUTPUT_SCHEMA = pa.schema(
    [
        ("service", pa.string()),
        ("window_start", UTC_MICROS),
        ("window_end", UTC_MICROS),
        ("count", pa.int64()),
        ("error_count", pa.int64()),
        ("mean_latency_ms", pa.float64()),
        ("max_latency_ms", pa.float64()),
    ]
)
_KEYS = ["service", "window_start"]
_PARTIAL_SUMS = ["count", "error_count", "latency_sum", "latency_count"]
_PARTIAL_SCHEMA = pa.schema(
    [("service", pa.string()), ("window_start", UTC_MICROS)]
    + [(name, pa.int64()) for name in ("count", "error_count")]
    + [("latency_sum", pa.float64()), ("latency_count", pa.int64()), ("latency_max", pa.float64())]
)
DECODER = JsonDecoder(EVENT_SCHEMA, required=("ts", "service"))
TABLES = (TABLE, DEAD_LETTER_TABLE)


def preaggregate(decoded: DecodedBatch) -> list[tuple[str, pa.Table]]:
    """Partial aggregates of one batch per (service, minute), split by shard key."""
    events = decoded.records
    if events.num_rows == 0:
        return []
    columns = pa.table(
        {
            "service": events["service"],
            "window_start": pc.floor_temporal(events["ts"], unit="minute").cast(UTC_MICROS),
            "is_error": pc.greater_equal(events["status"], ERROR_STATUS).cast(pa.int64()),
            "latency_ms": events["latency_ms"],
        }
    )
    grouped = columns.group_by(_KEYS).aggregate(
        [
            ([], "count_all"),
            ("is_error", "sum"),
            ("latency_ms", "sum"),
            ("latency_ms", "count"),
            ("latency_ms", "max"),
        ]
    )
    partial = pa.table(
        [
            grouped["service"],
            grouped["window_start"],
            grouped["count_all"],
            pc.coalesce(grouped["is_error_sum"], 0),
            pc.coalesce(grouped["latency_ms_sum"], 0.0),
            grouped["latency_ms_count"],
            grouped["latency_ms_max"],
        ],
        schema=_PARTIAL_SCHEMA,
    )
    return _split_by_shard(partial)


def _split_by_shard(partial: pa.Table) -> list[tuple[str, pa.Table]]:
    services = partial["service"].to_pylist()
    shards = pa.array([_shard_of(service) for service in services], pa.int32())
    return [
        (str(shard), partial.filter(pc.equal(shards, shard)))
        for shard in pc.unique(shards).to_pylist()
    ]


def _shard_of(service: str | None) -> int:
    """A stable shard for a key, the same in every process (unlike ``hash``)."""
    return zlib.crc32((service or "").encode()) % SHARDS


def merge_partials(first: pa.Table, second: pa.Table) -> pa.Table:
    """One partial row per (service, minute) combining both inputs."""
    both = pa.concat_tables([first, second])
    grouped = both.group_by(_KEYS).aggregate(
        [(name, "sum") for name in _PARTIAL_SUMS] + [("latency_max", "max")]
    )
    return pa.table(
        [grouped[name] for name in _KEYS]
        + [grouped[f"{name}_sum"] for name in _PARTIAL_SUMS]
        + [grouped["latency_max_max"]],
        schema=_PARTIAL_SCHEMA,
    )


def finalize(partial: pa.Table) -> pa.Table:
    """Output rows (:data:`OUTPUT_SCHEMA`) from merged partial aggregates."""
    window_end = pc.add(partial["window_start"], pa.scalar(WINDOW, pa.duration("us")))
    counted = partial["latency_count"]
    counted_or_null = pc.if_else(pc.greater(counted, 0), counted, pa.scalar(None, pa.int64()))
    mean = pc.divide(partial["latency_sum"], counted_or_null.cast(pa.float64()))
    return pa.table(
        [
            partial["service"],
            partial["window_start"],
            window_end,
            partial["count"],
            partial["error_count"],
            mean,
            partial["latency_max"],
        ],
        schema=OUTPUT_SCHEMA,
    ).sort_by([(key, "ascending") for key in _KEYS])


def _dead_letters(decoded: DecodedBatch) -> pa.Table | None:
    return decoded.dead_letter_table() if decoded.dead_letters else None


def build_flow(settings: FlowSettings, progress: Progress | None = None) -> Dataflow:
    """The monitoring dataflow: ``service_metrics`` and ``dead_letter`` tables under ``out``.

    Only bounded runs are supported: windows are emitted when the input ends.
    """
    if not settings.bounded:
        raise ConfigError("the monitoring flow runs bounded only for now: pass --bounded")
    flow = Dataflow("monitoring")
    source = KafkaBatchSource(settings.target, settings.topic, settings.bounded, progress)
    decoded = op.map("decode", op.input("kafka", flow, source), DECODER.decode)
    dead = op.filter_map("dead_letters", decoded, _dead_letters)
    op.output(
        DEAD_LETTER_TABLE,
        dead,
        ParquetDirectorySink(settings.out / DEAD_LETTER_TABLE, DEAD_LETTER_SCHEMA),
    )
    partials = op.flat_map("preaggregate", decoded, preaggregate)
    merged = op.fold_final("merge", partials, _PARTIAL_SCHEMA.empty_table, merge_partials)
    windows = op.map("finalize", merged, lambda shard_and_partial: finalize(shard_and_partial[1]))
    op.output(TABLE, windows, ParquetDirectorySink(settings.out / TABLE, OUTPUT_SCHEMA))
    return flow
