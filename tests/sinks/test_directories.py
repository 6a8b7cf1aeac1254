"""Rows to Hive directories, grouped in one pass: checked against pyarrow's strftime."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st

from sinks.directories import PARTITION_BY, PartitionBy, by_directory
from sinks.paths import NULL_SEGMENT_VALUE

UTC_MICROS = pa.timestamp("us", tz="UTC")
MIN_US = int((datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
MAX_US = int(
    (datetime(9999, 12, 31, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
)
STAMPS = st.lists(
    st.one_of(
        st.none(), st.integers(MIN_US * 10**6, MAX_US * 10**6), st.integers(0, 3 * 86_400 * 10**6)
    ),
    max_size=60,
)


def expected_directory(stamp: pa.Scalar, partition_by: PartitionBy) -> str:
    if partition_by == "none":
        return ""
    if not stamp.is_valid:
        day = hour = NULL_SEGMENT_VALUE
    else:
        day = pc.strftime(stamp, format="%Y-%m-%d").as_py()
        hour = pc.strftime(stamp, format="%H").as_py()
    return f"date={day}" + (f"/hour={hour}" if partition_by == "hour" else "")


@given(stamps=STAMPS, partition_by=st.sampled_from(PARTITION_BY),
       unit=st.sampled_from(["s", "ms", "us"]))  # fmt: skip
def test_each_row_lands_once_in_its_directory_in_order(
    stamps: list[int | None], partition_by: PartitionBy, unit: str
) -> None:
    in_unit = [None if us is None else us // {"s": 10**6, "ms": 1000, "us": 1}[unit]
               for us in stamps]  # fmt: skip
    times = pa.array(in_unit, pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
    table = pa.table({"t": times, "row": list(range(len(stamps)))})
    pieces = by_directory(table, "t", partition_by)

    directories = [directory for directory, _ in pieces]
    assert len(set(directories)) == len(directories), "one slice per directory"
    seen = []
    for directory, rows in pieces:
        assert rows.num_rows
        numbers = rows["row"].to_pylist()
        assert numbers == sorted(numbers), "rows keep their order within a directory"
        for stamp in rows["t"]:
            assert expected_directory(stamp, partition_by) == directory
        seen += numbers
    assert sorted(seen) == list(range(len(stamps)))


def test_times_no_date_can_name_go_to_the_default_partition() -> None:
    extremes = pa.array([2**62, -(2**62), 0], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    pieces = by_directory(pa.table({"t": extremes}), "t", "hour")
    default = f"date={NULL_SEGMENT_VALUE}/hour={NULL_SEGMENT_VALUE}"
    assert [(directory, rows.num_rows) for directory, rows in pieces] == [
        (default, 1),
        ("date=1970-01-01/hour=00", 1),
        (default, 1),
    ]
