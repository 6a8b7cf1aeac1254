"""`eventlake compact`: fewer files, the same rows, readers never see a half-swapped table."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from common.progress import Progress
from flows import monitoring
from sinks.compaction import compact_table
from sinks.table_sink import ParquetTableSink, RollingPolicy
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events, writing_flow

UTC_MICROS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("window_start", UTC_MICROS), ("key", pa.string()), ("value", pa.int64())])
T0 = datetime(2024, 5, 1, 0, tzinfo=UTC)
PARTS = 4


def sink_written_table(table_dir: Path, hours: int, snapshots: int, codec: str = "zstd") -> None:
    """A table as the sink writes it: every partition cuts a file per hour at every snapshot."""
    policy = RollingPolicy(1, compression=codec, partition_by="hour")
    sink = ParquetTableSink(table_dir, SCHEMA, "window_start", policy)
    parts = [sink.build_part("flow.table", str(index), None) for index in range(PARTS)]
    for snapshot in range(snapshots):
        for index, part in enumerate(parts):
            ids = [(snapshot * PARTS + index) * hours + hour for hour in range(hours)]
            starts = [T0 + timedelta(hours=hour, minutes=snapshot) for hour in range(hours)]
            keys = [f"k{value % 7}" for value in ids]
            part.write_batch([pa.table([pa.array(starts, UTC_MICROS), keys, ids], schema=SCHEMA)])
            part.snapshot()
    for part in parts:
        part.close()


def table_rows(table_dir: Path) -> list[tuple[Any, ...]]:
    table = ds.dataset(table_dir, partitioning="hive").to_table()
    return sorted(zip(*(table[name].to_pylist() for name in table.column_names), strict=True))


def data_files(table_dir: Path) -> list[Path]:
    return sorted(table_dir.rglob("*.parquet"))


@pytest.mark.parametrize("codec", ["zstd", "snappy"])
def test_compaction_merges_small_files_and_keeps_every_row(tmp_path: Path, codec: str) -> None:
    table_dir = tmp_path / "table"
    sink_written_table(table_dir, hours=6, snapshots=5, codec=codec)
    before = table_rows(table_dir)
    assert len(data_files(table_dir)) == PARTS * 5 * 6

    done = eventlake("compact", str(table_dir), "--target-size", "1MB")

    assert done.returncode == 0, done.stderr
    assert "merged 120 files" in done.stderr
    after = data_files(table_dir)
    assert len(after) == 6, "one file per hour directory"
    assert all(path.name.startswith("compacted-") for path in after)
    assert table_rows(table_dir) == before
    assert pq.read_schema(after[0]) == SCHEMA
    assert pq.ParquetFile(after[0]).metadata.row_group(0).column(0).compression.lower() == codec


def test_files_at_or_above_the_target_size_stay_as_they_are(tmp_path: Path) -> None:
    table_dir = tmp_path / "table"
    sink_written_table(table_dir, hours=1, snapshots=2)
    before = data_files(table_dir)
    report = compact_table(table_dir, target_size=min(p.stat().st_size for p in before))
    assert report.files_merged == 0 and data_files(table_dir) == before


def test_a_leftover_of_an_interrupted_compaction_is_cleaned_and_never_read(tmp_path: Path) -> None:
    table_dir = tmp_path / "table"
    sink_written_table(table_dir, hours=2, snapshots=2)
    before = table_rows(table_dir)
    hour = data_files(table_dir)[0].parent
    leftover = hour.with_name(f".{hour.name}.compacting")  # killed before its swap
    leftover.mkdir()
    pq.write_table(pa.table({"value": [99]}), leftover / "compacted-x-0000.parquet")
    assert table_rows(table_dir) == before, "readers skip hidden directories"

    compact_table(table_dir, target_size=2**20)

    assert not leftover.exists()
    assert table_rows(table_dir) == before


class ReadAfterEachSwap(Progress):
    """Reads the table each time compaction reports a directory done."""

    def __init__(self, table_dir: Path) -> None:
        super().__init__("compact")
        self.table_dir = table_dir
        self.views: list[list[tuple[Any, ...]]] = []

    def advance(self, units: int) -> None:
        super().advance(units)
        self.views.append(table_rows(self.table_dir))


def test_readers_during_compaction_see_every_row_exactly_once(tmp_path: Path) -> None:
    table_dir = tmp_path / "table"
    sink_written_table(table_dir, hours=24, snapshots=4)
    expected = table_rows(table_dir)
    stop, reads, failures = threading.Event(), [0], []

    def poll() -> None:
        while not stop.is_set():
            try:
                rows = table_rows(table_dir)
            except FileNotFoundError:
                continue  # listed just before a swap: readers retry
            if rows != expected:
                failures.append(f"read {len(rows)} rows, expected {len(expected)}")
            reads[0] += 1

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        in_between = ReadAfterEachSwap(table_dir)
        compact_table(table_dir, target_size=2**20, progress=in_between)
    finally:
        stop.set()
        reader.join()
    assert len(in_between.views) == 24, "a read after each directory's swap"
    assert all(view == expected for view in in_between.views)
    assert failures == [] and reads[0] > 0
    assert table_rows(table_dir) == expected


def test_a_directory_that_is_not_a_table_is_a_usage_error_naming_what_to_pass(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    sink_written_table(out / "windows", hours=2, snapshots=1)
    before = data_files(out)
    date_dir = next((out / "windows").glob("date=*"))

    outcomes = {
        "missing": eventlake("compact", str(tmp_path / "nothing")),
        "empty": eventlake("compact", str(tmp_path)),
        "output root": eventlake("compact", str(out)),
        "date folder": eventlake("compact", str(date_dir)),
    }

    assert all(result.returncode == 2 for result in outcomes.values())
    assert all("is not a table directory" in result.stderr for result in outcomes.values())
    assert f"pass one of its tables, e.g. {out / 'windows'}" in outcomes["output root"].stderr
    assert f"pass the table directory {out / 'windows'}" in outcomes["date folder"].stderr
    assert data_files(out) == before and not (out / ".eventlake.lock").exists()
    bad_size = eventlake("compact", str(tmp_path), "--target-size", "big")
    assert bad_size.returncode == 2 and "invalid size" in bad_size.stderr


def test_compaction_refuses_while_a_flow_writes_and_a_killed_flow_leaves_no_lock(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic()
    generator = MonitoringGenerator(seed=3, start=datetime(2024, 5, 1, 8, tzinfo=UTC))
    produce_events(broker.target, topic, generator, 20_000)
    table_dir = tmp_path / "out" / monitoring.TABLE
    with writing_flow(broker.target, topic, tmp_path) as flow:
        refused = eventlake("compact", str(table_dir))
        assert refused.returncode == 1 and "running flow is writing" in refused.stderr
        flow.send_signal(signal.SIGKILL)
    compacted = eventlake("compact", str(table_dir))
    assert compacted.returncode == 0, compacted.stderr


def test_a_table_without_directories_is_refused_and_left_whole(tmp_path: Path) -> None:
    table_dir = tmp_path / "table"
    policy = RollingPolicy(1, partition_by="none")
    sink = ParquetTableSink(table_dir, SCHEMA, "window_start", policy)
    part = sink.build_part("flow.table", "0", None)
    for hour in range(3):
        part.write_batch([pa.table([pa.array([T0 + timedelta(hours=hour)], UTC_MICROS),
                                    ["k"], [hour]], schema=SCHEMA)])  # fmt: skip
        part.snapshot()
    part.close()
    before = table_rows(table_dir)

    done = eventlake("compact", str(table_dir))

    assert done.returncode == 2 and "--partition-by none" in done.stderr
    assert table_rows(table_dir) == before and (table_dir / ".eventlake-sink.json").exists()
