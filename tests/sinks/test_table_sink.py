"""The exactly-once sink's partitions: buffering, rolling, Hive layout, resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from common.errors import ConfigError, OutputError
from sinks.parquet_files import require_writable
from sinks.table_sink import (
    COMBINE_BUFFERED_AT,
    END_OF_INPUT,
    TICK,
    ParquetTableSink,
    RollingPolicy,
    SinkState,
)

UTC_MICROS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("window_start", UTC_MICROS), ("value", pa.int64())])
T0 = datetime(2024, 5, 1, 13, 59, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(minutes: list[int]) -> pa.Table:
    starts = [T0 + timedelta(minutes=m) for m in minutes]
    return pa.table({"window_start": pa.array(starts, UTC_MICROS), "value": minutes})


def files(table_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(table_dir)) for p in table_dir.rglob("*.parquet"))


def test_rows_wait_in_the_snapshot_until_a_file_is_due(tmp_path: Path) -> None:
    clock = Clock()
    policy = RollingPolicy(max_rows=5, partition_by="hour")
    sink = ParquetTableSink(tmp_path, SCHEMA, "window_start", policy, clock=clock)
    part = sink.build_part("out", "3", None)
    part.write_batch([rows([0, 1])])
    state = part.snapshot()
    assert files(tmp_path) == [] and sum(t.num_rows for t in state.buffered) == 2
    part.write_batch([rows([2, 3, 4])])
    state = part.snapshot()
    assert state == SinkState(1)
    run = files(tmp_path)[0].split("/")[-1].split("-")[1]
    assert files(tmp_path) == [
        f"date=2024-05-01/hour=13/part-{run}-003-00000000-0000.parquet",
        f"date=2024-05-01/hour=14/part-{run}-003-00000000-0001.parquet",
    ]
    assert sorted(ds.dataset(tmp_path).to_table()["value"].to_pylist()) == [0, 1, 2, 3, 4]


def test_age_rolls_a_file_at_the_next_snapshot(tmp_path: Path) -> None:
    clock = Clock()
    sink = ParquetTableSink(
        tmp_path, SCHEMA, "window_start", RollingPolicy(max_age_s=10), clock=clock
    )
    part = sink.build_part("out", "0", None)
    part.write_batch([rows([0])])
    part.snapshot()
    clock.now += 10
    part.write_batch([TICK])  # no rows, but a snapshot
    assert part.snapshot().next_sequence == 1
    assert len(files(tmp_path)) == 1


def test_close_writes_what_is_left_and_a_rerun_rewrites_the_same_file(tmp_path: Path) -> None:
    sink = ParquetTableSink(tmp_path, SCHEMA, "window_start", None, clock=Clock())
    part = sink.build_part("out", "0", None)
    part.write_batch([rows([-5, -1])])  # both in hour 13: one file
    final = part.snapshot()
    part.close()
    written = files(tmp_path)
    assert len(written) == 1
    again = sink.build_part("out", "0", final)  # resumed after the end
    again.close()
    assert files(tmp_path) == written
    assert ds.dataset(tmp_path).count_rows() == 2


def test_end_of_input_writes_everything_at_that_snapshot(tmp_path: Path) -> None:
    sink = ParquetTableSink(tmp_path, SCHEMA, "window_start", None, clock=Clock())
    part = sink.build_part("out", "0", None)
    part.write_batch([rows([-5, -1])])
    assert part.snapshot().buffered, "the default policy waits for more rows"
    part.write_batch([END_OF_INPUT])
    final = part.snapshot()
    assert final == SinkState(next_sequence=1)
    written = files(tmp_path)
    part.close()
    sink.build_part("out", "0", final).close()  # a rerun of the finished run
    assert files(tmp_path) == written and len(written) == 1


def test_many_small_tables_are_buffered_as_few(tmp_path: Path) -> None:
    sink = ParquetTableSink(tmp_path, SCHEMA, "window_start", None, clock=Clock())
    part = sink.build_part("out", "0", None)
    for minute in range(3 * COMBINE_BUFFERED_AT):
        part.write_batch([rows([minute % 50])])
    state = part.snapshot()
    assert len(state.buffered) < COMBINE_BUFFERED_AT
    values = pa.concat_tables(state.buffered)["value"].to_pylist()
    assert values == [minute % 50 for minute in range(3 * COMBINE_BUFFERED_AT)]


def test_a_table_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    """A disk that fills or a directory that goes away mid-run: an OutputError naming the
    table and what to do, which the CLI prints as one line (exit 1), not a traceback."""
    table_dir = tmp_path / "windows"
    sink = ParquetTableSink(table_dir, SCHEMA, "window_start", RollingPolicy(max_rows=1))
    part = sink.build_part("out", "0", None)
    part.write_batch([rows([0])])
    (table_dir / "date=2024-05-01").write_text("a file where a directory goes")
    with pytest.raises(OutputError, match=r"cannot write table windows: .*run the same command"):
        part.snapshot()


def test_a_table_directory_is_checked_before_a_run_reads_anything(tmp_path: Path) -> None:
    (tmp_path / "windows").write_text("")
    with pytest.raises(ConfigError, match="is a file, where table windows goes"):
        require_writable(tmp_path / "windows")
    require_writable(tmp_path / "late" / "nested")
    assert list(tmp_path.iterdir()) == [tmp_path / "windows"], "the probe made nothing"
