"""Atomic Parquet files and the directory sink."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from common.errors import EventlakeError
from sinks.parquet_files import conform, count_rows, write_atomically

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])


def test_atomic_write_leaves_only_the_final_file(tmp_path: Path) -> None:
    table = pa.table({"key": ["a", "b"], "value": [1, 2]}, schema=SCHEMA)
    write_atomically(table, tmp_path / "t" / "part-0.parquet")
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["part-0.parquet"]
    assert ds.dataset(tmp_path / "t").to_table().equals(table)


def test_conform_casts_to_the_declared_schema() -> None:
    table = pa.table({"key": ["a"], "value": pa.array([1], pa.int32())})
    assert conform(table, SCHEMA).schema == SCHEMA


def test_conform_rejects_other_columns() -> None:
    with pytest.raises(EventlakeError, match="do not fit"):
        conform(pa.table({"value": [1], "key": ["a"]}), SCHEMA)


def test_count_rows_of_missing_and_present_tables(tmp_path: Path) -> None:
    assert count_rows(tmp_path / "nothing") == 0
    write_atomically(pa.table({"key": ["a", "b"], "value": [1, 2]}), tmp_path / "t" / "x.parquet")
    assert count_rows(tmp_path / "t") == 2
