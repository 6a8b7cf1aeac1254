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

Layout: ``table/<directory>/part-<partition>-<sequence>-<n>.parquet``, the
directory chosen by the table's time column (Hive style, so readers can prune
by time; :mod:`sinks.directories`). Rows are routed to the sink partition of
their directory (:meth:`ParquetTableSink.route`), so each roll writes about one
file per directory however many partitions there are. Also
``table/.eventlake-sink.json`` naming the bytewax step and recovery directory
whose snapshots say which files are committed.
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

from sinks.directories import DEFAULT_PARTITION_BY, PartitionBy, by_directory, check_columns
from sinks.faults import crash_point
from sinks.parquet_files import conform, write_atomically, writing
from sinks.pending_files import (
    CommitWatch,
    publish_committed,
    publish_roll,
    roll_directory,
    settle_partition,
)
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


class _TableWriter(StatefulSinkPartition[SinkItem, SinkState]):
    def __init__(
        self,
        table_dir: Path,
        schema: pa.Schema,
        time_column: str,
        partition: int,
        policy: RollingPolicy,
        state: SinkState,
        clock: Callable[[], float],
        commits: CommitWatch | None,
    ) -> None:
        self._table_dir = table_dir
        self._schema = schema
        self._time_column = time_column
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
            settle_partition(table_dir, partition, state.next_sequence)

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
            roll_dir = roll_directory(self._table_dir, self._partition, sequence)
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
            root = roll_directory(self._table_dir, self._partition, sequence)
            self._pending.append(sequence)
        pieces = by_directory(table, self._time_column, policy.partition_by)
        for number, (directory, rows) in enumerate(pieces):
            name = f"part-{self._partition:03d}-{sequence:08d}-{number:04d}.parquet"
            write_atomically(rows, root / directory / name, policy.compression,
                             policy.row_group_rows)  # fmt: skip
        self._state, self._uncombined = SinkState(sequence + 1), 0


class ParquetTableSink(FixedPartitionedSink[SinkItem, SinkState]):
    """One table's exactly-once sink; items are ``(key, table)`` with the fixed
    ``schema``, or ``(partition, signal)``. ConfigError if a column of ``schema`` has
    the name of a directory level (:func:`~sinks.directories.check_columns`).

    ``time_column`` (a UTC timestamp column) chooses each row's directory, as
    ``policy.partition_by`` says. ``recovery_dir`` is the run's checkpoint
    directory (None without one), recorded for maintenance commands.
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
        self._table_dir = table_dir
        self._recovery_dir = recovery_dir
        self._schema = schema
        self._time_column = time_column
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
        return by_directory(table, self._time_column, self._policy.partition_by)

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
            self._table_dir,
            self._schema,
            self._time_column,
            int(for_part),
            self._policy,
            resume_state or SinkState(),
            self._clock,
            self._commits,
        )
        with writing(self._table_dir):
            self._record_marker(step_id, for_part)
        return writer

    def _record_marker(self, step_id: str, for_part: str) -> None:
        recovery_dir = None if self._recovery_dir is None else str(self._recovery_dir.resolve())
        marker = {"step_id": step_id, "recovery_dir": recovery_dir}
        self._table_dir.mkdir(parents=True, exist_ok=True)
        temp = self._table_dir / f"{SINK_MARKER}.{for_part}.tmp"
        temp.write_text(json.dumps(marker))
        temp.replace(self._table_dir / SINK_MARKER)


def read_sink_marker(table_dir: Path) -> tuple[str, Path | None] | None:
    """(step id, recovery directory or None) recorded by the sink that wrote
    ``table_dir``; None if no eventlake sink wrote it."""
    path = table_dir / SINK_MARKER
    if not path.exists():
        return None
    marker = json.loads(path.read_text())
    recovery_dir = marker["recovery_dir"]
    return marker["step_id"], None if recovery_dir is None else Path(recovery_dir)


def publish_committed_rolls(table_dir: Path) -> int:
    """Publish the rolls of ``table_dir`` whose snapshot is committed (see
    :mod:`sinks.pending_files`); how many: 0 for a table written without checkpoints,
    or whose recovery directory is gone."""
    step_id, recovery_dir = read_sink_marker(table_dir) or ("", None)
    if recovery_dir is None or not recovery_dir.is_dir():
        return 0
    return publish_committed(table_dir, recovery_dir, step_id)
