"""What a windowed table is: keys, window, aggregations, and its fixed output schema."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.units import UTC_MICROS
from flows.engine.aggregations import Aggregation
from flows.engine.windows import WindowSpec

WINDOW_COLUMNS = [("window_start", UTC_MICROS), ("window_end", UTC_MICROS)]
Transform = Callable[[pa.Table], pa.Table]


def _unchanged(table: pa.Table) -> pa.Table:
    return table


@dataclass(frozen=True)
class Partial:
    """Aggregation states of one (key, window): ``states[i]`` belongs to aggregation i."""

    key: tuple[Any, ...]
    start: int
    end: int
    states: list[Any]


@dataclass(frozen=True)
class TableSpec:
    """One output table of a flow.

    ``derive`` adds the columns the aggregations read (vectorized, per batch);
    ``finish`` adds computed output columns to closed windows (e.g. a rate).
    Key columns keep their types from ``event_schema``.
    """

    name: str
    keys: tuple[str, ...]
    window: WindowSpec
    aggregations: tuple[Aggregation[Any], ...]
    event_schema: pa.Schema
    derive: Transform = field(default=_unchanged)
    finish: Transform = field(default=_unchanged)
    where: pc.Expression | None = None
    """Only events matching this expression count for the table (None: all)."""

    def selected(self, events: pa.Table) -> pa.Table:
        """The events of a batch that this table aggregates."""
        return events if self.where is None else events.filter(self.where)

    def output_schema(self) -> pa.Schema:
        """The table's schema, the same for every row and run."""
        return self._no_rows.schema

    @functools.cached_property
    def _no_rows(self) -> pa.Table:
        """An empty output table, made once: its schema is the table's."""
        return self.finish(self._base_schema().empty_table())

    def _base_schema(self) -> pa.Schema:
        columns = [(key, self.event_schema.field(key).type) for key in self.keys]
        columns += WINDOW_COLUMNS
        for aggregation in self.aggregations:
            columns += aggregation.columns()
        return pa.schema(columns)

    def rows(self, partials: Sequence[Partial]) -> pa.Table:
        """Output rows for closed windows, with :meth:`output_schema`."""
        if not partials:
            return self._no_rows
        base = self._base_schema()
        columns: list[list[Any]] = [[] for _ in base]
        for partial in partials:
            values = [*partial.key, partial.start, partial.end]
            for aggregation, state in zip(self.aggregations, partial.states, strict=True):
                values += aggregation.result(state)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        arrays = [
            pa.array(column, pa.int64()).cast(UTC_MICROS)
            if schema_field.name in ("window_start", "window_end")
            else pa.array(column, schema_field.type)
            for column, schema_field in zip(columns, base, strict=True)
        ]
        return self.finish(pa.Table.from_arrays(arrays, schema=base))

    def rows_of_columns(
        self, keys: pa.Table, starts: np.ndarray, ends: np.ndarray, results: list[pa.Array]
    ) -> pa.Table:
        """Output rows for closed windows given as columns: the key columns, each window's
        start and end (µs), and the aggregations' output columns in order."""
        windows = [pa.array(starts).cast(UTC_MICROS), pa.array(ends).cast(UTC_MICROS)]
        arrays = [*keys.columns, *windows, *results]
        return self.finish(pa.Table.from_arrays(arrays, schema=self._base_schema()))

    def merge(self, left: Partial, right: Partial) -> Partial:
        """One partial holding both (of the same key and window)."""
        states = [
            aggregation.merge(a, b)
            for aggregation, a, b in zip(self.aggregations, left.states, right.states, strict=True)
        ]
        return Partial(left.key, left.start, left.end, states)
