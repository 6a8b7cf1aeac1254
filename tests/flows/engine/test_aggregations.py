"""Each aggregation against numpy on random data, merges in any order, nulls and empties."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from typing import Any

import datasketches as ds
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ConfigError
from flows.engine.aggregations import (
    Aggregation,
    Count,
    Distinct,
    Quantiles,
    Stat,
    TopK,
)
from flows.engine.sketches import HLL_LG_K, KLL_K

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
maybe = st.one_of(st.none(), finite)
chunks = st.lists(st.lists(maybe, max_size=40), min_size=1, max_size=6)


def _fold(agg: Aggregation[Any], parts: list[list[Any]], pa_type: pa.DataType) -> Any:
    """Update one state per part, then merge them left to right."""
    states = [agg.update_batch(agg.initialize(), pa.array(part, pa_type)) for part in parts]
    merged = states[0]
    for state in states[1:]:
        merged = agg.merge(merged, state)
    return merged


@settings(max_examples=60, deadline=None)
@given(chunks)
def test_stats_match_numpy_ignoring_nulls(parts: list[list[float | None]]) -> None:
    values = np.array([v for part in parts for v in part if v is not None], dtype=np.float64)
    expected = {
        "sum": values.sum() if len(values) else None,
        "mean": values.mean() if len(values) else None,
        "min": values.min() if len(values) else None,
        "max": values.max() if len(values) else None,
        "stddev": values.std(ddof=1) if len(values) > 1 else None,
    }
    for stat, want in expected.items():
        agg = Stat(stat, "x")
        (got,) = agg.result(_fold(agg, parts, pa.float64()))
        if want is None:
            assert got is None, stat
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), stat


@settings(max_examples=40, deadline=None)
@given(chunks, st.randoms())
def test_merge_order_does_not_matter(parts: list[list[float | None]], rnd: Any) -> None:
    shuffled = parts[:]
    rnd.shuffle(shuffled)
    for stat in ("sum", "mean", "stddev", "min", "max"):
        agg = Stat(stat, "x")
        (left,) = agg.result(_fold(agg, parts, pa.float64()))
        (right,) = agg.result(_fold(agg, shuffled, pa.float64()))
        assert (left is None) == (right is None)
        if left is not None:
            assert left == pytest.approx(right, rel=1e-9, abs=1e-6)


@given(chunks)
def test_count_counts_events_including_nulls(parts: list[list[float | None]]) -> None:
    (got,) = Count().result(_fold(Count(), parts, pa.float64()))
    assert got == sum(len(part) for part in parts)


def test_stat_of_timestamps_is_a_timestamp() -> None:
    ts = pa.timestamp("ms", tz="UTC")
    agg = Stat("min", "ts", "first", output_type=pa.timestamp("us", tz="UTC"))
    state = agg.update_batch(
        agg.initialize(), pa.array([1_700_000_000_123, None, 1_600_000_000_000], ts)
    )
    (got,) = agg.result(state)
    assert got.timestamp() == 1_600_000_000.0


def test_unknown_stat_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose from"):
        Stat("median", "x")


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=2**31))
def test_quantiles_within_kll_rank_error(parts_count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [list(rng.lognormal(3, 1, size=rng.integers(1, 3000))) for _ in range(parts_count)]
    agg = Quantiles("latency", (0.5, 0.95, 0.99))
    *results, sketch = agg.result(_fold(agg, parts, pa.float64()))
    values = np.sort(np.concatenate(parts))
    # Twice the documented normalized rank error (1.33% at 99% confidence for k=200).
    bound = 2 * ds.kll_doubles_sketch.get_normalized_rank_error(KLL_K, False)
    for quantile, result in zip((0.5, 0.95, 0.99), results, strict=True):
        rank = np.searchsorted(values, result, side="right") / len(values)
        assert abs(rank - quantile) <= bound + 1 / len(values)
    assert isinstance(sketch, bytes) and len(sketch) > 0


def test_quantiles_of_empty_group_are_null_with_a_sketch() -> None:
    agg = Quantiles("latency", (0.5,))
    result = agg.result(agg.update_batch(agg.initialize(), pa.array([None], pa.float64())))
    assert result[0] is None and isinstance(result[1], bytes)


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=20_000), st.integers(min_value=1, max_value=5))
def test_distinct_within_hll_error(distinct: int, parts_count: int) -> None:
    users = [f"user-{i}" for i in range(distinct)] * 2
    parts = [users[i::parts_count] for i in range(parts_count)] + [[None]]
    estimate, sketch = Distinct("user").result(_fold(Distinct("user"), parts, pa.string()))
    error = 3 * 1.04 / math.sqrt(2**HLL_LG_K)  # three standard errors
    assert abs(estimate - distinct) <= max(1, error * distinct)
    assert isinstance(sketch, bytes)


def test_topk_finds_the_most_frequent_items_with_counts() -> None:
    rng = np.random.default_rng(3)
    products = [f"p{int(i)}" for i in rng.zipf(1.5, size=20_000) if i < 500]
    parts = [products[:7000], products[7000:], [None]]
    agg = TopK("product", 5)
    (top,) = agg.result(_fold(agg, parts, pa.string()))
    expected = Counter(products).most_common(5)
    assert [row["item"] for row in top] == [item for item, _ in expected]
    for row, (_, count) in zip(top, expected, strict=True):
        assert abs(row["count"] - count) <= 0.01 * len(products)


@pytest.mark.parametrize(
    "agg", [Stat("mean", "x"), Quantiles("x", (0.5,)), Distinct("x"), TopK("x", 2), Count()]
)
def test_states_survive_pickling(agg: Aggregation[Any]) -> None:
    state = agg.update_batch(agg.initialize(), pa.array([1.0, 2.0, 2.0, None]))
    restored = pickle.loads(pickle.dumps(state))
    assert agg.result(restored) == agg.result(state)


def test_columns_are_named_after_the_field() -> None:
    names = [name for agg in (Quantiles("lat", (0.5, 0.999)), Distinct("u"), TopK("p"))
             for name, _ in agg.columns()]  # fmt: skip
    assert names == ["p50_lat", "p99_9_lat", "sketch_lat", "distinct_u", "hll_u", "topk_p"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), maybe), max_size=120))
def test_update_groups_equals_update_batch_per_group(rows: list[tuple[int, float | None]]) -> None:
    groups = np.array([group for group, _ in rows], dtype=np.int64)
    values = pa.array([value for _, value in rows], pa.float64())
    aggregations: list[Aggregation[Any]] = [
        Count(), Stat("sum", "x"), Stat("stddev", "x"), Stat("min", "x"), Stat("max", "x"),
        Quantiles("x", (0.5,)), Distinct("x"), TopK("x", 3),
    ]  # fmt: skip
    for agg in aggregations:
        together = agg.update_groups(values, groups, 5)
        for group in range(5):
            alone = agg.update_batch(agg.initialize(), values.filter(pa.array(groups == group)))
            got, want = agg.result(together[group])[0], agg.result(alone)[0]
            assert (got is None) == (want is None), agg
            if isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-9, abs=1e-6), agg
            else:
                assert got == want, agg


@pytest.mark.parametrize("agg", [Quantiles("x", (0.5, 0.9)), Distinct("x"), TopK("x", 3)])
def test_sketch_merges_in_any_order_agree(agg: Aggregation[Any]) -> None:
    parts = [[float(i % 7) for i in range(start, start + 50)] for start in range(0, 200, 50)]
    forward = agg.result(_fold(agg, parts, pa.float64()))[0]
    backward = agg.result(_fold(agg, parts[::-1], pa.float64()))[0]
    assert forward == backward  # small inputs: every sketch here is exact
