"""Aggregations as small objects: ``initialize``, ``update_batch``, ``merge``, ``result``.

An aggregation turns the values of one field within one (key, window) into
output columns. States are plain picklable objects (sketches pickle as their
serialized bytes), so they can live in bytewax snapshots. Nulls are ignored by
every value aggregation (SQL semantics); :class:`Count` counts events.
Quantiles, distinct counts and top-k use Apache DataSketches (KLL, HLL and
frequent items); their serialized sketches are output too, so windows can be
rolled up later without the raw events.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import datasketches as ds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.errors import ConfigError
from common.units import percent_label
from flows.engine.moments import FIELD_OF_STAT, Moments
from flows.engine.sketches import (
    HLL_LG_K,
    TOPK_LG_MAX_MAP_SIZE,
    FrequentState,
    HllState,
    KllState,
)

FLOAT64 = pa.float64()
S = TypeVar("S")
Columns = list[tuple[str, pa.DataType]]


class Aggregation(ABC, Generic[S]):
    """One aggregation of one field; ``columns`` are its output columns, fixed up front."""

    field: str | None

    @abstractmethod
    def columns(self) -> Columns:
        """Names and Arrow types of the output columns, in order."""

    @abstractmethod
    def initialize(self) -> S:
        """The state of an empty group."""

    @abstractmethod
    def update_batch(self, state: S, values: pa.Array) -> S:
        """``state`` after adding ``values`` (the group's values of ``field``)."""

    def update_groups(self, values: pa.Array, groups: np.ndarray, count: int) -> list[S]:
        """States of ``count`` groups at once; ``groups[i]`` is the group of ``values[i]``.

        The default splits ``values`` by group and calls :meth:`update_batch`.
        """
        order = np.argsort(groups, kind="stable")
        bounds = np.searchsorted(groups[order], np.arange(count + 1))
        ordered = pc.take(values, pa.array(order))
        return [
            self.update_batch(self.initialize(), ordered.slice(start, stop - start))
            for start, stop in itertools.pairwise(bounds)
        ]

    @abstractmethod
    def merge(self, left: S, right: S) -> S:
        """The state of the union of two groups; associative and commutative."""

    @abstractmethod
    def result(self, state: S) -> list[Any]:
        """Output values, one per column of :meth:`columns`."""


def floats_with_nulls(values: pa.Array) -> pa.Array:
    """``values`` as float64, nulls kept (timestamps as microseconds since the epoch)."""
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.timestamp("us", tz=values.type.tz)).cast(pa.int64())
    return values.cast(pa.float64())


def _floats(values: pa.Array) -> np.ndarray:
    """Non-null values as float64 (timestamps as microseconds since the epoch)."""
    valid = pc.drop_null(floats_with_nulls(values))
    return np.array(valid.to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass(frozen=True)
class Count(Aggregation[int]):
    """Number of events in the group, nulls included."""

    name: str = "count"
    field: str | None = None

    def columns(self) -> Columns:
        return [(self.name, pa.int64())]

    def initialize(self) -> int:
        return 0

    def update_batch(self, state: int, values: pa.Array) -> int:
        return state + len(values)

    def update_groups(self, values: pa.Array, groups: np.ndarray, count: int) -> list[int]:
        return [int(n) for n in np.bincount(groups, minlength=count)]

    def merge(self, left: int, right: int) -> int:
        return left + right

    def result(self, state: int) -> list[Any]:
        return [state]


STATS = ("sum", "mean", "min", "max", "stddev")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Stat(Aggregation[Moments]):
    """``sum``, ``mean``, ``min``, ``max`` or ``stddev`` (sample) of a numeric field.

    Empty groups give null (``sum`` too, as in SQL). ``output_type`` lets
    ``min``/``max`` of timestamps come out as timestamps.
    """

    stat: str
    field: str
    name: str = ""
    output_type: pa.DataType = FLOAT64

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ConfigError(f"unknown statistic {self.stat!r}; choose from {list(STATS)}")

    def columns(self) -> Columns:
        return [(self.name or f"{self.stat}_{self.field}", self.output_type)]

    def initialize(self) -> Moments:
        return Moments()

    def update_batch(self, state: Moments, values: pa.Array) -> Moments:
        return state.combine(Moments.of(_floats(values)))

    def update_groups(self, values: pa.Array, groups: np.ndarray, count: int) -> list[Moments]:
        floats = floats_with_nulls(values).to_numpy(zero_copy_only=False)
        valid = ~np.isnan(floats)  # nulls; the decoder lets no NaN through
        ids, kept = groups[valid], floats[valid]
        n = np.bincount(ids, minlength=count)
        total = np.bincount(ids, weights=kept, minlength=count)
        mean = np.divide(total, n, out=np.zeros(count), where=n > 0)
        m2 = np.bincount(ids, weights=(kept - mean[ids]) ** 2, minlength=count)
        low, high = np.full(count, np.inf), np.full(count, -np.inf)
        np.minimum.at(low, ids, kept)
        np.maximum.at(high, ids, kept)
        columns = (n.tolist(), total.tolist(), mean.tolist(), m2.tolist(), low.tolist(),
                   high.tolist())  # fmt: skip
        return [Moments(*group) if group[0] else Moments() for group in zip(*columns, strict=True)]

    def merge(self, left: Moments, right: Moments) -> Moments:
        return left.combine(right)

    def result(self, state: Moments) -> list[Any]:
        if state.n == 0 or (self.stat == "stddev" and state.n < 2):
            return [None]
        if self.stat == "stddev":
            value = math.sqrt(state.m2 / (state.n - 1))
        else:
            value = getattr(state, FIELD_OF_STAT[self.stat])
        if pa.types.is_timestamp(self.output_type):
            return [_EPOCH + timedelta(microseconds=int(value))]
        return [value]


@dataclass(frozen=True)
class Quantiles(Aggregation[KllState]):
    """Quantiles of a numeric field from one KLL sketch: ``p50_f``, ``p99_f``, …, ``sketch_f``.

    Results are within the sketch's normalized rank error (:data:`KLL_K`).
    """

    field: str
    quantiles: tuple[float, ...]

    def columns(self) -> Columns:
        names = [(f"{percent_label(q)}_{self.field}", pa.float64()) for q in self.quantiles]
        return [*names, (f"sketch_{self.field}", pa.binary())]

    def initialize(self) -> KllState:
        return KllState()

    def update_batch(self, state: KllState, values: pa.Array) -> KllState:
        state.add(_floats(values))
        return state

    def update_groups(self, values: pa.Array, groups: np.ndarray, count: int) -> list[KllState]:
        floats = floats_with_nulls(values).to_numpy(zero_copy_only=False)
        valid = ~np.isnan(floats)  # nulls; the decoder lets no NaN through
        order = np.argsort(groups[valid], kind="stable")
        ordered = floats[valid][order]
        bounds = np.searchsorted(groups[valid][order], np.arange(count + 1))
        return [KllState(ordered[start:stop]) for start, stop in itertools.pairwise(bounds)]

    def merge(self, left: KllState, right: KllState) -> KllState:
        left.merge(right)
        return left

    def result(self, state: KllState) -> list[Any]:
        sketch = state.sketch()
        if sketch.is_empty():
            return [None] * len(self.quantiles) + [state.serialize()]
        return [sketch.get_quantile(q) for q in self.quantiles] + [state.serialize()]


def _as_strings(values: pa.Array) -> pa.Array:
    return pc.drop_null(values).cast(pa.string())


@dataclass(frozen=True)
class Distinct(Aggregation[HllState]):
    """Approximate number of distinct non-null values (HLL): ``distinct_f``, ``hll_f``."""

    field: str

    def columns(self) -> Columns:
        return [(f"distinct_{self.field}", pa.float64()), (f"hll_{self.field}", pa.binary())]

    def initialize(self) -> HllState:
        return HllState(ds.hll_sketch(HLL_LG_K))

    def update_batch(self, state: HllState, values: pa.Array) -> HllState:
        for value in pc.unique(_as_strings(values)).to_pylist():
            state.sketch.update(value)
        return state

    def merge(self, left: HllState, right: HllState) -> HllState:
        union = ds.hll_union(HLL_LG_K)
        union.update(left.sketch)
        union.update(right.sketch)
        return HllState(union.get_result())

    def result(self, state: HllState) -> list[Any]:
        return [state.sketch.get_estimate(), state.serialize()]


TOPK_TYPE = pa.list_(pa.struct([("item", pa.string()), ("count", pa.int64())]))


@dataclass(frozen=True)
class TopK(Aggregation[FrequentState]):
    """The ``k`` most frequent non-null values with estimated counts: ``topk_f``.

    From a frequent-items sketch: exact while a group has fewer distinct values
    than the sketch's map holds, otherwise within its documented error.
    """

    field: str
    k: int = 5

    def columns(self) -> Columns:
        return [(f"topk_{self.field}", TOPK_TYPE)]

    def initialize(self) -> FrequentState:
        return FrequentState(ds.frequent_strings_sketch(TOPK_LG_MAX_MAP_SIZE))

    def update_batch(self, state: FrequentState, values: pa.Array) -> FrequentState:
        counts = pc.value_counts(_as_strings(values))
        for item, count in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        ):
            state.sketch.update(item, count)
        return state

    def merge(self, left: FrequentState, right: FrequentState) -> FrequentState:
        left.sketch.merge(right.sketch)
        return left

    def result(self, state: FrequentState) -> list[Any]:
        rows = state.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        ranked = sorted(rows, key=lambda row: (-row[1], row[0]))[: self.k]
        return [[{"item": item, "count": estimate} for item, estimate, *_ in ranked]]
