"""With checkpoints, a file appears only once the snapshot that wrote it is durable.

The recovery store here is bytewax's own SQLite layout (made by
``init_db_dir``); each test commits a snapshot the way a finished epoch does:
an execution, every worker's frontier past the epoch, and the pickled state.
The crash tests in ``tests/flows`` check the same with bytewax committing.
"""

from __future__ import annotations

import pickle
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from bytewax.recovery import init_db_dir

from common.errors import ConfigError
from sinks.compaction import compact_table
from sinks.pending_files import pending_rolls, publish_roll, roll_directory
from sinks.table_sink import (
    TICK,
    ParquetTableSink,
    RollingPolicy,
    SinkState,
    publish_committed_rolls,
)

UTC_MICROS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("window_start", UTC_MICROS), ("value", pa.int64())])
T0 = datetime(2024, 5, 1, 13, 59, tzinfo=UTC)
STEP = "flow.table"


def rows(minutes: list[int]) -> pa.Table:
    starts = [T0 + timedelta(minutes=m) for m in minutes]
    return pa.table({"window_start": pa.array(starts, UTC_MICROS), "value": minutes})


def visible_values(table_dir: Path) -> list[int]:
    return sorted(ds.dataset(table_dir, SCHEMA).to_table()["value"].to_pylist())


@pytest.fixture
def recovery_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "recovery"
    directory.mkdir()
    init_db_dir(directory, 1)  # type: ignore[no-untyped-call]
    return directory


def commit(recovery_dir: Path, epoch: int, states: dict[str, SinkState]) -> None:
    """What bytewax records once ``epoch`` is durable: snapshots and the frontier past it."""
    with sqlite3.connect(recovery_dir / "part-0.sqlite3") as db:
        db.execute(
            "INSERT OR IGNORE INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1)"
        )
        front = "INSERT OR REPLACE INTO fronts (ex_num, worker_index, worker_frontier) VALUES"
        db.execute(f"{front} (0, 0, ?)", (epoch + 1,))
        snap = "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES"
        for key, state in states.items():
            db.execute(f"{snap} (?, ?, ?, ?)", (STEP, key, epoch, pickle.dumps(state)))


def rolls(table_dir: Path) -> list[tuple[int, int]]:
    return [(roll.partition, roll.sequence) for roll in pending_rolls(table_dir)]


def sink(table_dir: Path, recovery_dir: Path) -> ParquetTableSink:
    return ParquetTableSink(table_dir, SCHEMA, "window_start", RollingPolicy(max_rows=1),
                            recovery_dir)  # fmt: skip


def test_a_file_appears_once_its_snapshot_is_committed(tmp_path: Path, recovery_dir: Path) -> None:
    table_dir = tmp_path / "table"
    part = sink(table_dir, recovery_dir).build_part(STEP, "1", None)
    part.write_batch([rows([0, 1])])
    first = part.snapshot()
    assert visible_values(table_dir) == [], "written, but its snapshot is not durable yet"
    assert rolls(table_dir) == [(1, 0)]

    part.write_batch([rows([2])])
    part.snapshot()
    assert visible_values(table_dir) == [], "still not durable at the next snapshot"

    commit(recovery_dir, 1, {"1": first})
    part.write_batch([TICK])
    part.snapshot()
    assert visible_values(table_dir) == [0, 1], "the second roll's snapshot is not committed"
    assert rolls(table_dir) == [(1, 1)]


def test_a_resume_publishes_what_its_state_covers_and_deletes_the_rest(
    tmp_path: Path, recovery_dir: Path
) -> None:
    table_dir = tmp_path / "table"
    part = sink(table_dir, recovery_dir).build_part(STEP, "1", None)
    part.write_batch([rows([0])])
    committed = pickle.loads(pickle.dumps(part.snapshot()))  # as bytewax stores it
    part.write_batch([rows([5])])
    part.snapshot()  # written, but the crash comes before this snapshot is committed
    other = sink(table_dir, recovery_dir).build_part(STEP, "2", None)
    other.write_batch([rows([7])])
    other.snapshot()

    sink(table_dir, recovery_dir).build_part(STEP, "1", committed)  # the resume

    assert visible_values(table_dir) == [0]
    assert rolls(table_dir) == [(2, 0)], "not partition 1's"


def test_the_end_of_a_run_publishes_only_committed_rolls(
    tmp_path: Path, recovery_dir: Path
) -> None:
    table_dir = tmp_path / "table"
    parts = [sink(table_dir, recovery_dir).build_part(STEP, str(n), None) for n in (0, 1)]
    states = {}
    for number, part in enumerate(parts):
        part.write_batch([rows([number])])
        states[str(number)] = part.snapshot()
        part.close()
    commit(recovery_dir, 1, {"0": states["0"]})

    assert publish_committed_rolls(table_dir, recovery_dir) == 1
    assert visible_values(table_dir) == [0]
    assert publish_committed_rolls(table_dir, recovery_dir) == 0, "published once"


def test_a_half_published_roll_is_finished_by_the_next_publisher(tmp_path: Path) -> None:
    roll = roll_directory(tmp_path, "0a1b2c3d4e5f", 0, 0)
    for hour in ("13", "14"):
        path = roll / f"date=2024-05-01/hour={hour}/{roll.name}-00{hour}.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(rows([int(hour)]), path)
    first = sorted(roll.rglob("*.parquet"))[0]
    target = tmp_path / first.relative_to(roll)
    target.parent.mkdir(parents=True)
    first.rename(target)  # a crash came after the first rename

    publish_roll(tmp_path, roll)
    publish_roll(tmp_path, roll)  # a second publisher finds nothing left to do

    assert visible_values(tmp_path) == [13, 14]
    assert not roll.exists()


def three_rolls_two_committed(table_dir: Path, recovery_dir: Path) -> None:
    written = sink(table_dir, recovery_dir)
    parts = [written.build_part(STEP, str(n), None) for n in (0, 1, 2)]
    states = {}
    for number, part in enumerate(parts):
        part.write_batch([rows([-number])])  # all on one day: compacted together
        states[str(number)] = part.snapshot()
        part.close()
    commit(recovery_dir, 1, {"0": states["0"], "1": states["1"]})


def test_compaction_publishes_committed_rolls_and_leaves_the_others(
    tmp_path: Path, recovery_dir: Path
) -> None:
    table_dir = tmp_path / "table"
    three_rolls_two_committed(table_dir, recovery_dir)

    report = compact_table(table_dir, recovery_dir=recovery_dir)

    assert (report.published, report.uncommitted, report.files_merged) == (2, 1, 2)
    assert visible_values(table_dir) == [-1, 0]
    assert len(list(table_dir.glob("date=*/compacted-*.parquet"))) == 1


def test_compaction_reads_no_recovery_directory_it_is_not_given(
    tmp_path: Path, recovery_dir: Path
) -> None:
    """The table's marker names its recovery directory, but anyone who can write the
    output can write the marker, and checkpoints are pickles: only a directory the user
    names is read."""
    table_dir = tmp_path / "table"
    three_rolls_two_committed(table_dir, recovery_dir)

    report = compact_table(table_dir)

    assert (report.published, report.uncommitted) == (0, 3)
    assert visible_values(table_dir) == []


def test_compaction_refuses_the_recovery_directory_of_another_run(
    tmp_path: Path, recovery_dir: Path
) -> None:
    table_dir = tmp_path / "table"
    three_rolls_two_committed(table_dir, recovery_dir)
    other = tmp_path / "other-recovery"
    other.mkdir()
    init_db_dir(other, 1)  # type: ignore[no-untyped-call]

    with pytest.raises(ConfigError, match="pass the --recovery-dir of the run you started"):
        compact_table(table_dir, recovery_dir=other)
    assert len(pending_rolls(table_dir)) == 3, "nothing was published or thrown away"


def test_two_runs_never_write_the_same_file_names(tmp_path: Path, recovery_dir: Path) -> None:
    table_dir = tmp_path / "table"
    names = []
    for recovery in (None, None, recovery_dir):
        part = ParquetTableSink(table_dir, SCHEMA, "window_start", RollingPolicy(max_rows=1),
                                recovery).build_part(STEP, "0", None)  # fmt: skip
        part.write_batch([rows([0])])
        part.snapshot()
        names.append({path.name for path in table_dir.rglob("*.parquet")} - set().union(*names))
    assert all(len(new) == 1 for new in names), names
    resumed = sink(table_dir, recovery_dir).build_part(STEP, "0", None)
    resumed.write_batch([rows([0])])
    resumed.snapshot()
    pending = [path.name for path in table_dir.rglob("*.parquet") if ".pending" in str(path)]
    assert pending == list(names[2]), "a resume of a run writes the same names again"
