"""Windowed tables over any JSON topic: what ``eventlake aggregate`` and pipeline files run.

A :class:`PipelineFlow` plays the role of a flow module (see
:mod:`flows.registry`) for a :class:`~flows.pipelines.config.PipelineConfig`:
one topic, decoded leniently (:mod:`sources.flexible_decode`), and one table
per aggregation, plus ``late`` and ``dead_letter``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.dataflow import Dataflow

from common.errors import ConfigError
from common.progress import Progress
from flows.engine.tables import TableSpec
from flows.pipelines.config import AggregationConfig, PipelineConfig
from flows.runtime.dataflow import SHARED_TABLES, build_pipeline
from flows.runtime.settings import FlowSettings
from sources.flexible_decode import FlexibleJsonDecoder

WINDOWS_TABLE = "windows"
"""The table of ``eventlake aggregate``."""


class PipelineFlow:
    """A pipeline as a flow: its topic, its tables, and how to build its dataflow."""

    def __init__(self, pipeline: PipelineConfig) -> None:
        self.pipeline = pipeline
        self.decoder = FlexibleJsonDecoder(
            pipeline.time_field,
            pipeline.text_fields,
            pipeline.number_fields,
            pipeline.time_format,
            pipeline.strict,
        )
        self.specs = [self._spec(table) for table in pipeline.tables]

    @property
    def DEFAULT_TOPIC(self) -> str:  # noqa: N802 - the flow-module interface
        """The pipeline's topic."""
        return self.pipeline.topic

    @property
    def TABLES(self) -> tuple[str, ...]:  # noqa: N802
        """The pipeline's tables, then the :data:`SHARED_TABLES`."""
        return (*(spec.name for spec in self.specs), *SHARED_TABLES)

    def build_flow(self, settings: FlowSettings, progress: Progress | None = None) -> Dataflow:
        """The dataflow computing every table of the pipeline; ConfigError if the run's
        definition or an existing table's columns differ."""
        flow = build_pipeline("aggregate", settings, self.decoder, self.specs, progress).flow
        self.check_output(settings.out)
        return flow

    def check_output(self, out: Path) -> None:
        """ConfigError if ``out`` holds one of the tables with another schema."""
        for spec in self.specs:
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

    def _spec(self, table: AggregationConfig) -> TableSpec:
        return TableSpec(
            name=table.table,
            keys=table.keys,
            window=table.window,
            aggregations=table.aggregations,
            event_schema=self.decoder.schema,
            where=None if table.filter is None else table.filter.expression,
        )


def _describe(schema: pa.Schema) -> str:
    return ", ".join(schema.names)
