"""Which Hive directory each output row goes to, found for a whole table at once.

A table's rows are placed by their UTC time column: ``date=YYYY-MM-DD/hour=HH``
(``--partition-by hour``), ``date=YYYY-MM-DD`` (``day``, the default: what Hive
and Spark tables usually use) or the table directory itself (``none``). Rows
are grouped by one stable sort of an integer bucket per row, so grouping costs
the same whether a table spans one hour or a year of them.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.errors import ConfigError
from sinks.paths import hive_segment

PartitionBy = Literal["day", "hour", "none"]
PARTITION_BY: tuple[PartitionBy, ...] = get_args(PartitionBy)
DEFAULT_PARTITION_BY: PartitionBy = "day"
DAY, HOUR = "date", "hour"
"""The names of the Hive directory levels."""
PARTITION_COLUMNS: dict[PartitionBy, tuple[str, ...]] = {"day": (DAY,), "hour": (DAY, HOUR),
                                                         "none": ()}  # fmt: skip
"""The columns readers of Hive directories add to each layout's rows."""
READ_AT = pa.field("read_at", pa.timestamp("ms", tz="UTC"))
"""When the run read a row (the wall clock): the time column that files the dead letters
and late rows. Their own times (a Kafka timestamp, an event time) are whatever a producer
set, so one message a day apart from the last would make a directory of its own."""
_BUCKET_S: dict[PartitionBy, int] = {"hour": 3_600, "day": 86_400}
_NULL_BUCKET = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def by_directory(
    table: pa.Table, time_column: str, partition_by: PartitionBy
) -> list[tuple[str, pa.Table]]:
    """``table`` cut into one slice per directory (relative to the table, ``""`` for
    ``none``), in time order; rows with a null time go to Hive's default partition."""
    if partition_by == "none" or not table.num_rows:
        return [("", table)] if table.num_rows else []
    buckets = _buckets(table[time_column], _BUCKET_S[partition_by])
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


def _buckets(stamps: pa.ChunkedArray, bucket_s: int) -> np.ndarray:
    """Each row's hour or day since the epoch, in the column's own unit (so no time
    can overflow); nulls get a bucket of their own."""
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[stamps.type.unit]
    counts = pc.fill_null(stamps.cast(pa.int64()), _NULL_BUCKET).to_numpy()
    nulls = counts == _NULL_BUCKET
    buckets: np.ndarray = counts // (bucket_s * per_second)
    buckets[nulls] = _NULL_BUCKET
    return buckets


def _directory(bucket: int, partition_by: PartitionBy) -> str:
    """The directory of a bucket; Hive's default partition for null times and for
    times no calendar date can name (before year 1, after 9999)."""
    day = hour = None
    if bucket != _NULL_BUCKET:
        with contextlib.suppress(OverflowError):
            start = _EPOCH + timedelta(seconds=bucket * _BUCKET_S[partition_by])
            day, hour = start.date().isoformat(), f"{start.hour:02d}"
    segments = [hive_segment(DAY, day)]
    if partition_by == "hour":
        segments.append(hive_segment(HOUR, hour))
    return "/".join(segments)


def check_columns(table: str, schema: pa.Schema, partition_by: PartitionBy) -> None:
    """ConfigError if a column of ``table`` has the name of a directory level of
    ``partition_by`` in any case (as Spark and DuckDB compare names): readers of Hive
    directories would return the directory's value in its place, or fail."""
    levels = {name.casefold(): name for name in PARTITION_COLUMNS[partition_by]}
    for column in schema.names:
        level = levels.get(column.casefold())
        if level is None:
            continue
        ways = ["--partition-by none (no directories)"]
        if level == HOUR:
            ways.insert(0, "--partition-by day")
        raise ConfigError(
            f"table {table}: column {column!r} has the name of the {level}=… directories of "
            f"--partition-by {partition_by}, so pyarrow, DuckDB and Spark would read the "
            f"directory's value in its place; pass {' or '.join(ways)}, or use a field of "
            "another name"
        )
