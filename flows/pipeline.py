"""What every flow shares: Kafka in, dead letters and late rows out, one sink per table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow, Stream

from flows.engine import Windowed, late_schema, windowed
from flows.recovery import ResumePoint, resume_point
from flows.run_definition import check_definition, describe
from flows.settings import FlowSettings
from flows.tables import TableSpec
from flows.windows import reach_us
from sinks.table_sink import END_OF_INPUT, SINK_PARTITIONS, ParquetTableSink, SinkItem
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
from sources.progress import Progress, note

SOURCE_STEP = "kafka"
LATE_TABLE = "late"
SHARED_TABLES = (LATE_TABLE, DEAD_LETTER_TABLE, GAPS_TABLE)
"""The tables every flow writes besides its own."""
MICROS = 1_000_000


@dataclass(frozen=True)
class Pipeline:
    """A flow under construction: its dataflow and the windowed streams of its tables."""

    flow: Dataflow
    tables: dict[str, Windowed]
    settings: FlowSettings
    ends: Stream[tuple[str, SinkItem]]
    """END_OF_INPUT for every sink partition, whenever a source partition ends."""

    def write(
        self,
        table: str,
        rows: Stream[tuple[str, pa.Table]],
        schema: pa.Schema,
        time_column: str = "window_start",
    ) -> None:
        """Write keyed ``rows`` exactly once to ``out/<table>/`` with the fixed ``schema``."""
        checkpointing = self.settings.checkpointing
        sink = ParquetTableSink(
            self.settings.out / table,
            schema,
            time_column,
            self.settings.rolling,
            None if checkpointing is None else checkpointing.directory,
        )
        placed = op.flat_map(f"{table}_by_directory", rows, sink.route)
        op.output(table, op.merge(f"{table}_until_end", placed, self.ends), sink)


_NO_DEAD_LETTERS = DEAD_LETTER_SCHEMA.empty_table()
_NO_GAPS = GAPS_SCHEMA.empty_table()


def _dead_letters(batch: DecodedBatch) -> list[tuple[str, pa.Table]]:
    rows = batch.dead_letter_table() if batch.dead_letters else _NO_DEAD_LETTERS
    return _with_every_partition(batch.partition, rows, _NO_DEAD_LETTERS)


def _gaps(batch: DecodedBatch) -> list[tuple[str, pa.Table]]:
    rows = batch.gap_table() if batch.gaps else _NO_GAPS
    return _with_every_partition(batch.partition, rows, _NO_GAPS)


def _with_every_partition(
    source_partition: int, rows: pa.Table, nothing: pa.Table
) -> list[tuple[str, pa.Table]]:
    """``rows`` of a batch, and an empty table for every sink partition: rows go to the
    partition of their directory, which then snapshots on time (rolls by age, publishes)
    although no batch of its own brings it anything."""
    items = [(str(part), nothing) for part in range(SINK_PARTITIONS)]
    return [*items, (str(source_partition), rows)] if rows.num_rows else items


def _end_markers(batch: DecodedBatch) -> list[tuple[str, SinkItem]]:
    last = batch.ended or batch.stopping
    return [(str(part), END_OF_INPUT) for part in range(SINK_PARTITIONS)] if last else []


def build_pipeline(
    name: str,
    settings: FlowSettings,
    decoder: JsonDecoder,
    specs: Sequence[TableSpec],
    progress: Progress | None,
) -> Pipeline:
    """Source, dead letters, every table of ``specs`` and the late table, all written."""
    resumed = _resume_point(name, settings, decoder.time_field, specs)
    flow = Dataflow(name)
    reach = max((reach_us(spec.window) for spec in specs), default=0)
    decoder = decoder.guarded(TimeGuard(settings.max_future_s, reach))
    options = ReadOptions(
        settings.bounded,
        settings.idle_timeout_s,
        settings.batch_size,
        settings.stop,
        settings.on_gap,
        resumed.execution,
    )
    source = KafkaBatchSource(settings.target, settings.topic, decoder, options, progress)
    batches = op.input(SOURCE_STEP, flow, source)
    ends = op.flat_map("end_of_input", batches, _end_markers)
    pipeline = Pipeline(flow, {}, settings, ends)
    dead = op.flat_map("dead", batches, _dead_letters)
    pipeline.write(DEAD_LETTER_TABLE, dead, DEAD_LETTER_SCHEMA, "kafka_timestamp")
    gaps = op.flat_map("gap_rows", batches, _gaps)
    pipeline.write(GAPS_TABLE, gaps, GAPS_SCHEMA, "detected_at")
    lateness_us = micros(settings.lateness_s)
    late_streams = []
    for spec in specs:
        table = windowed(
            spec.name, batches, spec, decoder.time_field, lateness_us, resumed.newest_event_us
        )
        pipeline.tables[spec.name] = table
        pipeline.write(spec.name, table.rows, spec.output_schema())
        late_streams.append(table.late)
    late = op.merge("late_rows", *late_streams)
    pipeline.write(LATE_TABLE, late, late_schema(decoder.schema))
    return pipeline


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
        note(f"run {name}: {change} since the last run")
    return resume_point(checkpointing.directory, f"{name}.{SOURCE_STEP}")


def micros(seconds: float) -> int:
    """Seconds (from settings) as integer microseconds."""
    return round(seconds * MICROS)
