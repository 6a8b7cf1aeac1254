"""Which Hive directory each output row goes to, found for a whole table at once.

A table's rows are placed by their UTC time column: ``date=YYYY-MM-DD/hour=HH``
(``--partition-by hour``), ``date=YYYY-MM-DD`` (``day``, the default: what Hive
and Spark tables usually use) or the table directory itself (``none``). Rows
are grouped by one stable sort of an integer bucket per row, so grouping costs
the same whether a table spans one hour or a year of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sinks.paths import hive_segment

PartitionBy = Literal["day", "hour", "none"]
PARTITION_BY: tuple[PartitionBy, ...] = get_args(PartitionBy)
DEFAULT_PARTITION_BY: PartitionBy = "day"
_BUCKET_US: dict[PartitionBy, int] = {"hour": 3_600_000_000, "day": 86_400_000_000}
_NULL_BUCKET = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def by_directory(
    table: pa.Table, time_column: str, partition_by: PartitionBy
) -> list[tuple[str, pa.Table]]:
    """``table`` cut into one slice per directory (relative to the table, ``""`` for
    ``none``), in time order; rows with a null time go to Hive's default partition."""
    if partition_by == "none" or not table.num_rows:
        return [("", table)] if table.num_rows else []
    buckets = _buckets(table[time_column], _BUCKET_US[partition_by])
    order = np.argsort(buckets, kind="stable")
    ordered = buckets[order]
    cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(ordered)]))
    sorted_rows = table.take(pa.array(order))
    return [
        (_directory(int(ordered[start]), partition_by), sorted_rows.slice(start, end - start))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _buckets(stamps: pa.ChunkedArray, bucket_us: int) -> np.ndarray:
    """Each row's hour or day since the epoch; nulls get a bucket of their own."""
    micros = pc.fill_null(stamps.cast(pa.int64()), _NULL_BUCKET).to_numpy()
    nulls = micros == _NULL_BUCKET
    buckets: np.ndarray = micros // bucket_us
    buckets[nulls] = _NULL_BUCKET
    return buckets


def _directory(bucket: int, partition_by: PartitionBy) -> str:
    if bucket == _NULL_BUCKET:
        day, hour = None, None
    else:
        start = _EPOCH + timedelta(microseconds=bucket * _BUCKET_US[partition_by])
        day, hour = start.date().isoformat(), f"{start.hour:02d}"
    segments = [hive_segment("date", day)]
    if partition_by == "hour":
        segments.append(hive_segment("hour", hour))
    return "/".join(segments)
