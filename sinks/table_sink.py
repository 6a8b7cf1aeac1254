"""The exactly-once Parquet sink: files committed with bytewax snapshots.

Each sink partition buffers rows in ``write_batch``. At ``snapshot()`` (the end
of an epoch) it writes the buffer out once the rolling policy says a file is
due, and returns its state: the next file sequence number and the rows not yet
written. With checkpoints, those files wait under a hidden name until that
snapshot is durable, then appear under their final name
(:mod:`sinks.pending_files`); a resume deletes what its restored state does not
cover, and the restored buffer and the replayed input write it again. Readers
therefore see every row exactly once, never a partial file, and never a file
that a resume deletes. Without checkpoints, files appear as they are written.

When a bounded run's input ends, every partition receives
:data:`END_OF_INPUT` and writes all it holds at that epoch's snapshot, so a
finished run leaves no rows behind. bytewax snapshots a partition only in an
epoch in which it received an item, so the flow sends every partition a
:data:`TICK` now and then: it rolls by age and publishes on time however
rarely rows come.

Layout: ``table/<directory>/part-<run>-<partition>-<sequence>-<n>.parquet``, the
directory chosen by the table's time column (Hive style, so readers can prune
by time; :mod:`sinks.directories`). Rows are routed to the sink partition of
their directory (:meth:`ParquetTableSink.route`), so each roll writes about one
file per directory however many partitions there are. Also
``table/.eventlake-sink.json`` naming the bytewax step, the run and its recovery
directory, for maintenance messages only: what is committed is read from the
recovery directory the user names, never from one a file under the output names.
"""

from __future__ import annotations

import enum
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from common.errors import ConfigError
from sinks.directories import DEFAULT_PARTITION_BY, PartitionBy, by_directory, check_columns
from sinks.faults import crash_point
from sinks.parquet_files import conform, write_atomically, writing
from sinks.pending_files import (
    CommitWatch,
    publish_committed,
    publish_roll,
    roll_directory,
    roll_name,
    settle_partition,
)
from sinks.recovery_store import new_run_id, read_run_id, run_id_of
from sinks.table_lock import hold_for_writing

SINK_PARTITIONS = 16
COMBINE_BUFFERED_AT = 256
"""The newest buffered tables are combined into one once this many wait: each small
table costs kilobytes of buffers and objects, in memory and in every snapshot."""
COMPRESSIONS = ("zstd", "snappy", "lz4", "none")
SINK_MARKER = ".eventlake-sink.json"


class Signal(enum.Enum):
    """Items for a sink partition that carry no rows (cheap to send between processes)."""

    TICK = "tick"
    """Nothing to write: snapshot anyway (roll by age, publish what is durable)."""
    END_OF_INPUT = "end of input"
    """A bounded run's input has ended: write everything at this epoch's snapshot."""


TICK = Signal.TICK
END_OF_INPUT = Signal.END_OF_INPUT
SinkItem: TypeAlias = pa.Table | Signal


@dataclass(frozen=True)
class RollingPolicy:
    """When buffered rows become a file, and how files are written."""

    max_rows: int = 1_000_000
    """Cut a file once this many rows are buffered."""
    max_bytes: int = 128 * 2**20
    """Cut a file once the buffer holds this many bytes (in memory)."""
    max_age_s: float = 60.0
    """Cut a file once its oldest row has waited this long (checked at snapshots)."""
    row_group_rows: int = 128 * 1024
    """Rows per Parquet row group."""
    compression: str = "zstd"
    """Parquet compression: zstd, snappy, lz4 or none."""
    partition_by: PartitionBy = DEFAULT_PARTITION_BY
    """Hive directories by the time column: ``day``, ``hour`` or ``none``."""


@dataclass
class SinkState:
    """What a sink partition snapshots: next file sequence and unwritten rows."""

    next_sequence: int = 0
    buffered: list[pa.Table] = field(default_factory=list)
    buffered_since: float | None = None


@dataclass(frozen=True)
class _Table:
    """What every partition of one table's sink shares."""

    directory: Path
    schema: pa.Schema
    time_column: str
    run_id: str


class _TableWriter(StatefulSinkPartition[SinkItem, SinkState]):
    def __init__(
        self,
        table: _Table,
        partition: int,
        policy: RollingPolicy,
        state: SinkState,
        clock: Callable[[], float],
        commits: CommitWatch | None,
    ) -> None:
        table_dir = table.directory
        self._table_dir = table_dir
        self._schema = table.schema
        self._time_column = table.time_column
        self._run_id = table.run_id
        self._partition = partition
        self._policy = policy
        self._state = state
        self._clock = clock
        self._commits = commits
        self._pending: list[int] = []
        """Sequences of rolls written under a hidden name, not yet published."""
        self._uncombined = len(state.buffered)
        """How many of the newest buffered tables have not been combined yet."""
        self._input_ended = False
        with writing(table_dir):
            self._lock = hold_for_writing(table_dir)
            settle_partition(table_dir, table.run_id, partition, state.next_sequence)

    def write_batch(self, values: list[SinkItem]) -> None:
        self._input_ended |= any(value is END_OF_INPUT for value in values)
        rows = [
            conform(table, self._schema)
            for table in values
            if isinstance(table, pa.Table) and table.num_rows
        ]
        if rows and self._state.buffered_since is None:
            self._state.buffered_since = self._clock()
        buffered = self._state.buffered
        buffered.extend(rows)
        self._uncombined += len(rows)
        if self._uncombined >= COMBINE_BUFFERED_AT:
            newest = buffered[-self._uncombined :]
            buffered[-self._uncombined :] = [pa.concat_tables(newest).combine_chunks()]
            self._uncombined = 0

    def snapshot(self) -> SinkState:
        with writing(self._table_dir):
            self._publish_durable()
            if self._due() or (self._input_ended and self._state.buffered):
                self._roll()
                crash_point("before_snapshot")
        self._input_ended = False
        return SinkState(
            self._state.next_sequence, list(self._state.buffered), self._state.buffered_since
        )

    def close(self) -> None:
        """End of a run. Without checkpoints, write whatever is left (nothing, once input
        has ended); with them, rows not in a committed snapshot are replayed on resume,
        and the command publishes the last rolls once they are durable."""
        if self._commits is None:
            with writing(self._table_dir):
                self._roll()
        else:
            self._commits.close()
        self._lock.close()

    def _publish_durable(self) -> None:
        if not self._pending or self._commits is None:
            return
        committed = self._commits.committed_sequence(self._partition)
        for sequence in [sequence for sequence in self._pending if sequence < committed]:
            roll_dir = roll_directory(self._table_dir, self._run_id, self._partition, sequence)
            publish_roll(self._table_dir, roll_dir)
            self._pending.remove(sequence)

    def _due(self) -> bool:
        buffered = self._state.buffered
        if not buffered or self._state.buffered_since is None:
            return False
        rows = sum(table.num_rows for table in buffered)
        size = sum(table.nbytes for table in buffered)
        age = self._clock() - self._state.buffered_since
        policy = self._policy
        return rows >= policy.max_rows or size >= policy.max_bytes or age >= policy.max_age_s

    def _roll(self) -> None:
        if not self._state.buffered:
            return
        table = pa.concat_tables(self._state.buffered)
        policy = self._policy
        sequence = self._state.next_sequence
        root = self._table_dir
        if self._commits is not None:
            root = roll_directory(self._table_dir, self._run_id, self._partition, sequence)
            self._pending.append(sequence)
        pieces = by_directory(table, self._time_column, policy.partition_by)
        prefix = roll_name(self._run_id, self._partition, sequence)
        for number, (directory, rows) in enumerate(pieces):
            name = f"{prefix}-{number:04d}.parquet"
            write_atomically(rows, root / directory / name, policy.compression,
                             policy.row_group_rows)  # fmt: skip
        self._state, self._uncombined = SinkState(sequence + 1), 0


class ParquetTableSink(FixedPartitionedSink[SinkItem, SinkState]):
    """One table's exactly-once sink; items are ``(key, table)`` with the fixed
    ``schema``, or ``(partition, signal)``. ConfigError if a column of ``schema`` has
    the name of a directory level (:func:`~sinks.directories.check_columns`).

    ``time_column`` (a UTC timestamp column) chooses each row's directory, as
    ``policy.partition_by`` says. ``recovery_dir`` is the run's checkpoint
    directory (None without one). File names carry the run's id, so no two runs write
    the same names: the recovery directory's (:func:`~sinks.recovery_store.run_id_of`),
    which a resume finds again, or a new one without checkpoints.
    """

    def __init__(
        self,
        table_dir: Path,
        schema: pa.Schema,
        time_column: str,
        policy: RollingPolicy | None = None,
        recovery_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        run_id = new_run_id() if recovery_dir is None else run_id_of(recovery_dir)
        self._table = _Table(table_dir, schema, time_column, run_id)
        self._recovery_dir = recovery_dir
        self._policy = policy or RollingPolicy()
        check_columns(table_dir.name, schema, self._policy.partition_by)
        self._clock = clock
        self._commits: CommitWatch | None = None

    def list_parts(self) -> list[str]:
        """Every partition: the output directory is shared by all workers."""
        return [str(index) for index in range(SINK_PARTITIONS)]

    def route(self, item: tuple[str, pa.Table]) -> list[tuple[str, pa.Table]]:
        """``item``'s rows keyed by their directory, so that one sink partition writes
        each directory: about one file per directory per roll, however many partitions."""
        _, table = item
        return by_directory(table, self._table.time_column, self._policy.partition_by)

    def part_fn(self, item_key: str) -> int:
        """A stable partition for a key (the same in every process).

        Shard and source-partition numbers map to themselves, which spreads
        them evenly over the sink partitions.
        """
        return int(item_key) if item_key.isdigit() else zlib.crc32(item_key.encode())

    def build_part(
        self, step_id: str, for_part: str, resume_state: SinkState | None
    ) -> _TableWriter:
        """The writer of one partition, resumed from ``resume_state`` if given; the
        table's marker exists once it holds the table's writer lock."""
        if self._recovery_dir is not None and self._commits is None:
            self._commits = CommitWatch(self._recovery_dir, step_id)
        writer = _TableWriter(
            self._table,
            int(for_part),
            self._policy,
            resume_state or SinkState(),
            self._clock,
            self._commits,
        )
        with writing(self._table.directory):
            self._record_marker(step_id, for_part)
        return writer

    def _record_marker(self, step_id: str, for_part: str) -> None:
        recovery_dir = None if self._recovery_dir is None else str(self._recovery_dir.resolve())
        marker = {"step_id": step_id, "run": self._table.run_id, "recovery_dir": recovery_dir}
        table_dir = self._table.directory
        table_dir.mkdir(parents=True, exist_ok=True)
        temp = table_dir / f"{SINK_MARKER}.{for_part}.tmp"
        temp.write_text(json.dumps(marker))
        temp.replace(table_dir / SINK_MARKER)


@dataclass(frozen=True)
class SinkMarker:
    """What a table's marker says about the run that wrote it: only ever shown to the
    user or compared, since anyone who can write the output can write the marker."""

    step_id: str
    run_id: str
    recovery_dir: Path | None


def read_sink_marker(table_dir: Path) -> SinkMarker | None:
    """The marker the sink that wrote ``table_dir`` left; None if no eventlake sink
    wrote it (or the marker cannot be read)."""
    try:
        marker = json.loads((table_dir / SINK_MARKER).read_text())
        recovery_dir = marker["recovery_dir"]
        return SinkMarker(str(marker["step_id"]), str(marker.get("run", "")),
                          None if recovery_dir is None else Path(recovery_dir))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def publish_committed_rolls(table_dir: Path, recovery_dir: Path) -> int:
    """Publish the rolls of ``table_dir`` that the run checkpointing in ``recovery_dir``
    wrote and committed (see :mod:`sinks.pending_files`); how many. ConfigError if the
    table was written by the run of another recovery directory."""
    marker = read_sink_marker(table_dir)
    if marker is None:
        return 0
    run_id = read_run_id(recovery_dir)
    if run_id is None or run_id != marker.run_id:
        raise ConfigError(
            f"{table_dir} was written by another run than the one checkpointing in "
            f"{recovery_dir} (its marker names {str(marker.recovery_dir)!r}: a file anyone who "
            "can write the output may have changed); pass the --recovery-dir of the run you "
            "started on this output"
        )
    return publish_committed(table_dir, recovery_dir, marker.step_id, run_id)
