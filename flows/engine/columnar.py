"""Aggregation states of many groups at once, as numpy columns (the session shard's form).

A table's aggregations are laid out in runs. Consecutive counts and statistics
share one block of moments (groups by members by moment fields), computed and
merged in a handful of numpy calls however many they are; any other aggregation
(the sketches) keeps an object column of its own states. Every method takes
rows sorted into runs, one run per group, beginning at ``bounds`` (the first at 0).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from flows.engine.aggregations import Aggregation, Count, Stat, floats_with_nulls
from flows.engine.moments import FIELD_OF_STAT, FIELDS, M2, N, merge_moments, moments_of_runs


@dataclass(frozen=True)
class _Moments:
    """Consecutive counts and statistics: one block of moments for all of them."""

    members: tuple[Count | Stat, ...]

    def states(self, table: pa.Table, order: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        columns = [
            np.ones(table.num_rows)
            if isinstance(member, Count)
            else floats_with_nulls(table[member.field]).to_numpy()
            for member in self.members
        ]
        return moments_of_runs(np.column_stack(columns)[order], bounds)

    def merged(self, states: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        return merge_moments(states, bounds)

    def results(self, states: np.ndarray) -> list[pa.Array]:
        return [_result(member, states[:, index]) for index, member in enumerate(self.members)]


def _result(member: Count | Stat, moments: np.ndarray) -> pa.Array:
    """The output column of one count or statistic from its moments."""
    n = moments[:, N]
    if isinstance(member, Count):
        return pa.array(n.astype(np.int64))
    if member.stat == "stddev":
        values = np.sqrt(np.divide(moments[:, M2], n - 1, out=np.zeros(len(n)), where=n > 1))
    else:
        values = moments[:, FIELDS.index(FIELD_OF_STAT[member.stat])]
    missing = n < (2 if member.stat == "stddev" else 1)
    values = np.where(missing, 0.0, values)
    if pa.types.is_timestamp(member.output_type):  # µs since the epoch, as any unit
        micros = pa.array(values.astype(np.int64), mask=missing)
        return micros.cast(pa.timestamp("us", tz=member.output_type.tz)).cast(member.output_type)
    return pa.array(values, mask=missing).cast(member.output_type)


@dataclass(frozen=True)
class _Objects:
    """Any other aggregation: a column of its own state objects."""

    aggregation: Aggregation[Any]

    def states(self, table: pa.Table, order: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        groups = np.empty(len(order), dtype=np.int64)
        groups[order] = np.repeat(np.arange(len(bounds)), np.diff(bounds, append=len(order)))
        column = np.empty(len(bounds), dtype=object)
        field = self.aggregation.field
        values = pa.array(np.arange(len(order))) if field is None else table[field]
        column[:] = self.aggregation.update_groups(values, groups, len(bounds))
        return column

    def merged(self, states: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        column = np.empty(len(bounds), dtype=object)
        column[:] = [
            functools.reduce(self.aggregation.merge, states[start:stop].tolist())
            for start, stop in itertools.pairwise([*bounds.tolist(), len(states)])
        ]
        return column

    def results(self, states: np.ndarray) -> list[pa.Array]:
        rows = [self.aggregation.result(state) for state in states.tolist()]
        return [
            pa.array([row[index] for row in rows], data_type)
            for index, (_, data_type) in enumerate(self.aggregation.columns())
        ]


@dataclass(frozen=True)
class StateLayout:
    """How a table's aggregation states are kept as columns: a list of state columns,
    one per run of aggregations."""

    runs: tuple[_Moments | _Objects, ...]

    def states(self, table: pa.Table, order: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
        """State columns of groups of rows of ``table`` (with the fields the aggregations
        read): ``order`` sorts the rows into one run per group."""
        return [run.states(table, order, bounds) for run in self.runs]

    def merged(
        self, states: list[np.ndarray], order: np.ndarray, bounds: np.ndarray
    ) -> list[np.ndarray]:
        """State columns of groups of states: ``order`` sorts them into one run per group."""
        return [
            run.merged(column[order], bounds) for run, column in zip(self.runs, states, strict=True)
        ]

    def results(self, states: list[np.ndarray]) -> list[pa.Array]:
        """The output columns of the aggregations, in their order."""
        return [
            array
            for run, column in zip(self.runs, states, strict=True)
            for array in run.results(column)
        ]


@functools.cache
def state_layout(aggregations: tuple[Aggregation[Any], ...]) -> StateLayout:
    """The layout for ``aggregations`` (made once per table)."""
    runs: list[_Moments | _Objects] = []
    for aggregation in aggregations:
        if not isinstance(aggregation, Count | Stat):
            runs.append(_Objects(aggregation))
        elif runs and isinstance(runs[-1], _Moments):
            runs[-1] = _Moments((*runs[-1].members, aggregation))
        else:
            runs.append(_Moments((aggregation,)))
    return StateLayout(tuple(runs))
