"""Windowed tables over any JSON topic: what ``eventlake aggregate`` and pipeline files run.

:func:`pipeline_flow` makes a :class:`~flows.runtime.flow.Flow` of a
:class:`~flows.pipelines.config.PipelineConfig`: one topic, decoded leniently
(:mod:`sources.flexible_decode`), and one table per aggregation, plus ``late``,
``dead_letter`` and ``gaps``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.dataflow import Dataflow

from common.errors import ConfigError
from common.metrics import RunMetrics
from flows.engine.tables import TableSpec
from flows.pipelines.config import AggregationConfig, PipelineConfig
from flows.runtime.dataflow import KAFKA_TO_PARQUET, SHARED_TABLES, FlowIO, build_pipeline
from flows.runtime.flow import Flow
from flows.runtime.settings import FlowSettings
from sources.flexible_decode import FlexibleJsonDecoder

WINDOWS_TABLE = "windows"
"""The table of ``eventlake aggregate``."""
DATAFLOW_NAME = "aggregate"
"""The dataflow of every pipeline, whatever it is called on the command line."""


def pipeline_flow(pipeline: PipelineConfig, name: str = DATAFLOW_NAME) -> Flow:
    """``pipeline`` as a flow called ``name``; its build refuses an ``--out`` that holds
    one of its tables with other columns."""
    decoder = FlexibleJsonDecoder(
        pipeline.time_field,
        pipeline.text_fields,
        pipeline.number_fields,
        pipeline.time_format,
        pipeline.strict,
    )
    specs = [_spec(table, decoder.schema) for table in pipeline.tables]

    def build(
        settings: FlowSettings, metrics: RunMetrics | None = None, io: FlowIO = KAFKA_TO_PARQUET
    ) -> Dataflow:
        flow = build_pipeline(DATAFLOW_NAME, settings, decoder, specs, metrics, io).flow
        _check_output(specs, settings.out)
        return flow

    tables = (*(spec.name for spec in specs), *SHARED_TABLES)
    return Flow(name, pipeline.topic, tables, build, pipeline.kafka, pipeline.lateness_s)


def _check_output(specs: list[TableSpec], out: Path) -> None:
    """ConfigError if ``out`` holds one of the tables with another schema."""
    for spec in specs:
        existing = next((out / spec.name).rglob("*.parquet"), None)
        if existing is None:
            continue
        schema = pq.read_schema(existing)
        expected = spec.output_schema()
        if not schema.equals(expected):
            raise ConfigError(
                f"{out / spec.name} holds a table with other columns "
                f"({_describe(schema)}) than this aggregation writes "
                f"({_describe(expected)}); pass another --out or remove that directory"
            )


def _spec(table: AggregationConfig, event_schema: pa.Schema) -> TableSpec:
    return TableSpec(
        name=table.table,
        keys=table.keys,
        window=table.window,
        aggregations=table.aggregations,
        event_schema=event_schema,
        where=None if table.filter is None else table.filter.expression,
    )


def _describe(schema: pa.Schema) -> str:
    return ", ".join(schema.names)
