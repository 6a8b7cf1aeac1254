"""What every flow shares: a source in (Kafka by default), dead letters and late rows
out, one sink per table (Parquet by default)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source

from common.errors import ConfigError
from common.log import LOGGER
from common.metrics import RunMetrics
from common.units import micros
from flows.engine.routing import Windowed, late_schema, windowed
from flows.engine.shard import NEVER, Emitted
from flows.engine.shard_state import OpenWindowCeiling
from flows.engine.tables import TableSpec
from flows.engine.windows import reach_us
from flows.runtime.checkpoints import ResumePoint, resume_point
from flows.runtime.offsets import group_commits
from flows.runtime.run_definition import check_definition, describe
from flows.runtime.settings import FlowSettings
from flows.runtime.stopping import stop_together
from sinks.directories import READ_AT
from sinks.table_sink import END_OF_INPUT, SINK_PARTITIONS, TICK, ParquetTableSink, SinkItem
from sources.batches import (
    DEAD_LETTER_SCHEMA,
    DEAD_LETTER_TABLE,
    GAPS_SCHEMA,
    GAPS_TABLE,
    DecodedBatch,
)
from sources.decode import JsonDecoder
from sources.event_time import TimeGuard
from sources.kafka_source import KafkaBatchSource, ReadOptions
from sources.offset_commits import GroupCommits

SourceFactory = Callable[[FlowSettings, JsonDecoder, ReadOptions, RunMetrics], Source[DecodedBatch]]
"""Makes a flow's source: batches of its topic, decoded with the decoder given, its
figures recorded in the metrics given."""
SinkFactory = Callable[[Path, pa.Schema, str, FlowSettings], ParquetTableSink]
"""Makes the sink of one table: its directory, schema and time column."""


def kafka_source(
    settings: FlowSettings, decoder: JsonDecoder, options: ReadOptions, metrics: RunMetrics
) -> Source[DecodedBatch]:
    """The flow's topic on its Kafka cluster, one bytewax partition per Kafka partition."""
    return KafkaBatchSource(settings.target, settings.topic, decoder, options, metrics)


def parquet_sink(
    table_dir: Path, schema: pa.Schema, time_column: str, settings: FlowSettings
) -> ParquetTableSink:
    """Parquet files under ``table_dir``, committed with the run's checkpoints."""
    checkpointing = settings.checkpointing
    directory = None if checkpointing is None else checkpointing.directory
    return ParquetTableSink(table_dir, schema, time_column, settings.rolling, directory)


@dataclass(frozen=True)
class FlowIO:
    """Where a flow's batches come from and where its tables go: Kafka and Parquet by
    default. Any bytewax source of :class:`DecodedBatch` may replace Kafka (tests use
    ``bytewax.testing.TestingSource``); a sink must be a :class:`ParquetTableSink`
    (its rows are routed by Hive directory), configured or subclassed."""

    source: SourceFactory = kafka_source
    sink: SinkFactory = parquet_sink


KAFKA_TO_PARQUET = FlowIO()
SOURCE_STEP = "kafka"
LATE_TABLE = "late"
SHARED_TABLES = (LATE_TABLE, DEAD_LETTER_TABLE, GAPS_TABLE)
"""The tables every flow writes besides its own."""
TICK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Pipeline:
    """A flow under construction: its dataflow and the windowed streams of its tables."""

    flow: Dataflow
    tables: dict[str, Windowed]
    settings: FlowSettings
    io: FlowIO
    metrics: RunMetrics
    signals: Stream[tuple[str, SinkItem]]
    """For every sink partition: END_OF_INPUT whenever a source partition ends, and a
    TICK at most every :data:`TICK_INTERVAL_S` per process while batches come."""

    def write(
        self,
        table: str,
        rows: Stream[tuple[str, pa.Table]],
        schema: pa.Schema,
        time_column: str = "window_start",
    ) -> None:
        """Write keyed ``rows`` exactly once to ``out/<table>/`` with the fixed ``schema``."""
        sink = self.io.sink(self.settings.out / table, schema, time_column, self.settings)
        op.inspect(f"{table}_counted", rows, lambda _, item: self._count(table, item))
        placed = op.flat_map(f"{table}_by_directory", rows, sink.route)
        op.output(table, op.merge(f"{table}_with_signals", placed, self.signals), sink)

    def write_as_read(
        self, table: str, rows: Stream[tuple[str, pa.Table]], schema: pa.Schema
    ) -> None:
        """Write keyed ``rows`` as :meth:`write` does, each stamped with the time it was
        read (:data:`~sinks.directories.READ_AT`), which files it: rows whose own times
        a producer sets make one directory per day (or hour) of the run, at most.
        ConfigError if a column of ``schema`` has that name, or any other twice."""
        written = schema.append(READ_AT)
        twice = sorted(name for name, count in Counter(written.names).items() if count > 1)
        if twice:
            raise ConfigError(
                f"table {table}: the events' field {twice[0]!r} has the name of a column "
                f"eventlake adds to {table} rows; read the events without it, or rename it "
                "in the events"
            )
        stamped = op.map(f"{table}_read_at", rows, _read_now)
        self.write(table, stamped, written, READ_AT.name)

    def observe(self, table: str, windowed: Windowed) -> None:
        """Record where each shard of windowed ``table`` stands after every batch."""

        def record(_step: str, item: tuple[str, Emitted]) -> None:
            shard, emitted = item
            late = 0 if emitted.late is None else emitted.late.num_rows
            watermark = None if emitted.watermark == NEVER else emitted.watermark
            self.metrics.shard(table, int(shard), watermark, emitted.open_windows, late)

        op.inspect(f"{table}_figures", windowed.emitted, record)

    def _count(self, table: str, item: tuple[str, pa.Table]) -> None:
        key, rows = item
        self.metrics.rows(table, key, rows.num_rows)


def _read_now(item: tuple[str, pa.Table]) -> tuple[str, pa.Table]:
    """``item``'s rows with the :data:`~sinks.directories.READ_AT` column: now."""
    key, rows = item
    now = pa.scalar(datetime.now(UTC), READ_AT.type)
    return key, rows.append_column(READ_AT, pa.repeat(now, rows.num_rows))


def _dead_letters(batch: DecodedBatch) -> list[tuple[str, pa.Table]]:
    return [(str(batch.partition), batch.dead_letter_table())] if batch.dead_letters else []


def _gaps(batch: DecodedBatch) -> list[tuple[str, pa.Table]]:
    return [(str(batch.partition), batch.gap_table())] if batch.gaps else []


class _Signals:
    """The signals a batch sends every sink partition: END_OF_INPUT if its source
    partition ended, else a TICK if none was sent for :data:`TICK_INTERVAL_S` in this
    process. Rows go to the partition of their directory, so a partition may get none
    for long; a tick lets it snapshot anyway (roll by age, publish)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ticked = -TICK_INTERVAL_S

    def __call__(self, batch: DecodedBatch) -> list[tuple[str, SinkItem]]:
        if batch.ended or batch.stopping:
            return [(str(part), END_OF_INPUT) for part in range(SINK_PARTITIONS)]
        now = self._clock()
        if now - self._ticked < TICK_INTERVAL_S:
            return []
        self._ticked = now
        return [(str(part), TICK) for part in range(SINK_PARTITIONS)]


def build_pipeline(
    name: str,
    settings: FlowSettings,
    decoder: JsonDecoder,
    specs: Sequence[TableSpec],
    metrics: RunMetrics | None = None,
    io: FlowIO = KAFKA_TO_PARQUET,
) -> Pipeline:
    """Source, dead letters, every table of ``specs`` and the late table, all written
    (where ``io`` says); the run's figures recorded in ``metrics`` if given."""
    metrics = metrics or RunMetrics()
    resumed = _resume_point(name, settings, decoder.time_field, specs)
    flow = Dataflow(name)
    reach = max((reach_us(spec.window) for spec in specs), default=0)
    decoder = decoder.guarded(TimeGuard(settings.max_future_s, reach))
    commits = group_commits(settings, name, f"{name}.{SOURCE_STEP}")
    options = _read_options(settings, resumed.execution, commits)
    batches = op.input(SOURCE_STEP, flow, io.source(settings, decoder, options, metrics))
    if settings.stop is not None:
        stop_together(batches, settings.stop)
    signals = op.flat_map("sink_signals", batches, _Signals())
    pipeline = Pipeline(flow, {}, settings, io, metrics, signals)
    dead = op.flat_map("dead", batches, _dead_letters)
    pipeline.write_as_read(DEAD_LETTER_TABLE, dead, DEAD_LETTER_SCHEMA)
    gaps = op.flat_map("gap_rows", batches, _gaps)
    pipeline.write(GAPS_TABLE, gaps, GAPS_SCHEMA, "detected_at")
    lateness_us = micros(settings.lateness_s)
    ceiling = OpenWindowCeiling(settings.max_open_windows)
    late_streams = []
    for spec in specs:
        table = windowed(spec.name, batches, spec, decoder.time_field, lateness_us, ceiling,
                         resumed.newest_event_us)  # fmt: skip
        pipeline.tables[spec.name] = table
        pipeline.observe(spec.name, table)
        pipeline.write(spec.name, table.rows, spec.output_schema())
        late_streams.append(table.late)
    late = op.merge("late_rows", *late_streams)
    pipeline.write_as_read(LATE_TABLE, late, late_schema(decoder.schema))
    return pipeline


def _read_options(
    settings: FlowSettings, execution: int, commits: GroupCommits | None
) -> ReadOptions:
    """How the source reads in run number ``execution`` on its checkpoint."""
    return ReadOptions(
        settings.bounded, settings.idle_timeout_s, settings.batch_size, settings.stop,
        settings.on_gap, execution, commits, settings.closes_windows,
    )  # fmt: skip


def _resume_point(
    name: str, settings: FlowSettings, time_field: str, specs: Sequence[TableSpec]
) -> ResumePoint:
    """With checkpoints: ConfigError if they hold a run of another definition (and a
    line for what may change); where the runs before this one left the source."""
    checkpointing = settings.checkpointing
    if checkpointing is None:
        return ResumePoint()
    definition = describe(name, settings, time_field, specs)
    for change in check_definition(checkpointing.directory, definition):
        LOGGER.info("run %s: %s since the last run", name, change)
    return resume_point(checkpointing.directory, f"{name}.{SOURCE_STEP}")
