"""Hive path segments stay inside the table directory, whatever the key value."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.paths import MAX_SEGMENT_BYTES, hive_segment

HOSTILE = ["../x", "a/b", "..", ".", "\x00", "a\x00b", "\n\t", "日本語/キー", "a=b", "%2F",
           "_hidden", ".hidden", "C:\\win", " ", "x" * 1000, "é" * 300]  # fmt: skip


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_stays_one_visible_component_of_the_table(
    tmp_path: Path, value: str
) -> None:
    segment = hive_segment("key", value)
    table_dir = tmp_path / "table"
    directory = table_dir / segment
    assert len(segment.encode()) <= MAX_SEGMENT_BYTES
    assert "/" not in segment and "\x00" not in segment
    assert directory.resolve().parent == table_dir.resolve()
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"n": [1]}), directory / "part.parquet")
    read = ds.dataset(table_dir, partitioning="hive").to_table()
    assert read["n"].to_pylist() == [1], "readers must not skip the directory"
    if len(value) < 80:  # long values are cut; short ones come back exactly
        assert read["key"].to_pylist() == [value]


def test_null_is_the_hive_default_partition(tmp_path: Path) -> None:
    for n, value in enumerate([None, "a"]):
        directory = tmp_path / hive_segment("key", value)
        directory.mkdir()
        pq.write_table(pa.table({"n": [n]}), directory / "part.parquet")
    partitioning = ds.HivePartitioning.discover(null_fallback="__HIVE_DEFAULT_PARTITION__")
    read = ds.dataset(tmp_path, partitioning=partitioning).to_table().sort_by("n")
    assert read["key"].to_pylist() == [None, "a"]


@given(st.text(), st.text())
def test_distinct_values_get_distinct_segments(first: str, second: str) -> None:
    if first != second:
        assert hive_segment("k", first) != hive_segment("k", second)


def test_long_values_sharing_a_prefix_stay_distinct() -> None:
    prefix = "p" * 400
    assert hive_segment("k", prefix + "a") != hive_segment("k", prefix + "b")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a=b", "_x"])
def test_a_name_that_is_not_an_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        hive_segment(name, "v")
