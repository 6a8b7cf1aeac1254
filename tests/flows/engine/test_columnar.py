"""State columns (the session shard's form) against the aggregations one group at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.units import UTC_MICROS
from flows.engine.aggregations import Aggregation, Count, Distinct, Quantiles, Stat, TopK
from flows.engine.columnar import state_layout

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
rows = st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), finite)), max_size=80)
AGGREGATIONS: tuple[Aggregation[Any], ...] = (
    Count(), Stat("sum", "x"), Stat("stddev", "x"), Quantiles("x", (0.5,)), Stat("mean", "x"),
    Stat("min", "x"), Stat("max", "t", output_type=UTC_MICROS), Distinct("x"), TopK("x", 3),
)  # fmt: skip


def _table(values: list[float | None]) -> pa.Table:
    ints = [None if value is None else int(value) for value in values]
    return pa.table({"x": pa.array(values, pa.float64()), "t": pa.array(ints).cast(UTC_MICROS)})


def _runs(groups: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts rows into runs by group, and where each run begins."""
    order = np.argsort(np.array(groups, dtype=np.int64), kind="stable")
    sorted_groups = np.array(groups, dtype=np.int64)[order]
    new_run = np.concatenate([[True], sorted_groups[1:] != sorted_groups[:-1]])
    return order, np.flatnonzero(new_run)


def _one_at_a_time(table: pa.Table, groups: list[int]) -> list[list[Any]]:
    """Output rows of each group, from update_batch and result of every aggregation."""
    rows_out = []
    for group in sorted(set(groups)):
        part = table.filter(pa.array([g == group for g in groups]))
        row: list[Any] = []
        for agg in AGGREGATIONS:
            values = part[agg.field] if agg.field else pa.array([0] * part.num_rows)
            row += agg.result(agg.update_batch(agg.initialize(), values))
        rows_out.append(row)
    return rows_out


def _assert_rows_equal(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want, strict=True):
        for got_value, want_value in zip(got_row, want_row, strict=True):
            if isinstance(want_value, float):
                assert got_value == pytest.approx(want_value, rel=1e-9, abs=1e-6)
            elif isinstance(want_value, bytes):  # a merged sketch may serialize differently;
                assert isinstance(got_value, bytes)  # the estimates beside it are compared
            else:
                assert got_value == want_value


def _output(results: list[pa.Array]) -> list[list[Any]]:
    columns = [array.to_pylist() for array in results]
    return [list(row) for row in zip(*columns, strict=True)]


def _states(data: list[tuple[int, float | None]]) -> tuple[pa.Table, list[int], list[Any]]:
    """The rows of ``data`` (group, value), their groups, and the state columns of the
    groups in sorted order."""
    groups, values = [g for g, _ in data], [v for _, v in data]
    table = _table(values)
    order, bounds = _runs(groups)
    return table, groups, state_layout(AGGREGATIONS).states(table, order, bounds)


@settings(max_examples=40, deadline=None)
@given(rows)
def test_states_of_groups_equal_each_group_alone(data: list[tuple[int, float | None]]) -> None:
    if not data:
        return
    table, groups, states = _states(data)
    got = _output(state_layout(AGGREGATIONS).results(states))
    _assert_rows_equal(got, _one_at_a_time(table, groups))


@settings(max_examples=40, deadline=None)
@given(rows, st.lists(st.integers(0, 2), min_size=80, max_size=80))
def test_merged_states_equal_the_states_of_the_union(
    data: list[tuple[int, float | None]], merge_into: list[int]
) -> None:
    """Groups states first, then merged into fewer groups: as if grouped so at once."""
    if not data:
        return
    table, groups, states = _states(data)
    target = [merge_into[group] for group in sorted(set(groups))]  # each state's new group
    merge_order, merge_bounds = _runs(target)
    layout = state_layout(AGGREGATIONS)
    got = _output(layout.results(layout.merged(states, merge_order, merge_bounds)))
    _assert_rows_equal(got, _one_at_a_time(table, [merge_into[group] for group in groups]))


def test_consecutive_counts_and_statistics_share_one_block() -> None:
    runs = state_layout(AGGREGATIONS).runs
    assert [len(getattr(run, "members", [None])) for run in runs] == [3, 1, 3, 1, 1]


def test_timestamps_come_out_in_the_unit_asked_for() -> None:
    latest = Stat("max", "t", output_type=pa.timestamp("ms", tz="UTC"))
    table = pa.table({"t": pa.array([1_000_000, 3_000_000]).cast(UTC_MICROS)})
    layout = state_layout((latest,))
    (result,) = layout.results(layout.states(table, np.arange(2), np.array([0])))
    assert result.type == pa.timestamp("ms", tz="UTC")
    assert result.to_pylist() == [datetime(1970, 1, 1, 0, 0, 3, tzinfo=UTC)]
