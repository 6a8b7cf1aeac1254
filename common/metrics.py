"""Live figures of a run, for its status line and ``/metrics``.

A run's source, shards and sinks record into one :class:`RunMetrics` per process.
Every figure is kept by what owns it (a Kafka partition, a shard of a table, a key of
a table's rows), and each of those lives in exactly one process, so the figures of
the processes of one run merge by union (:meth:`RunFigures.merged`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass
class PartitionFigures:
    """One Kafka partition as its reader sees it."""

    position: int = 0
    """The next offset to read."""
    end: int | None = None
    """The partition's end offset (high watermark) as last fetched, and never below
    the position (a fetch may be older than the batch just read); None before."""
    stop_at: int | None = None
    """Where a bounded read stops; None when unbounded."""
    events: int = 0
    dead_letters: int = 0
    gaps: int = 0
    gap_offsets: int = 0
    """Offsets deleted from Kafka before they were read."""

    def lag(self) -> int | None:
        """Messages between the position and the end (Kafka's consumer lag)."""
        return None if self.end is None else max(self.end - self.position, 0)


@dataclass
class ShardFigures:
    """One shard of a windowed table after its latest batch."""

    watermark_us: int | None = None
    """Event time before which its windows are closed; None before any event."""
    open_windows: int = 0
    late_rows: int = 0


@dataclass
class RunFigures:
    """A snapshot of a run's figures, and what they add up to."""

    partitions: dict[int, PartitionFigures] = field(default_factory=dict)
    partition_count: int = 0
    """The topic's partitions (a process of several reads only some of them)."""
    shards: dict[tuple[str, int], ShardFigures] = field(default_factory=dict)
    """By (table, shard)."""
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    """Rows handed to each table's sink (written at its next roll), by (table, key)."""
    active_at: float | None = None
    """When (Unix time) a reader last asked Kafka for messages."""

    def merged(self, other: RunFigures) -> RunFigures:
        """These figures and ``other``'s, from another process of the same run."""
        active = [at for at in (self.active_at, other.active_at) if at is not None]
        return RunFigures(
            {**self.partitions, **other.partitions},
            max(self.partition_count, other.partition_count),
            {**self.shards, **other.shards},
            {**self.rows, **other.rows},
            max(active, default=None),
        )

    def copy(self) -> RunFigures:
        """A copy that later recording does not change."""
        return RunFigures(
            {part: replace(figures) for part, figures in self.partitions.items()},
            self.partition_count,
            {key: replace(figures) for key, figures in self.shards.items()},
            dict(self.rows),
            self.active_at,
        )

    def complete(self) -> bool:
        """Whether every partition of the topic has reported (not so at start, nor in a
        process of several)."""
        return 0 < self.partition_count <= len(self.partitions)

    def events(self) -> int:
        """Messages read, dead letters included."""
        return sum(part.events for part in self.partitions.values())

    def lag(self) -> int | None:
        """Consumer lag summed over the partitions that reported (see :meth:`complete`);
        None before any, or while one's end is unknown."""
        lags = [part.lag() for part in self.partitions.values()]
        return None if not lags or None in lags else sum(lag or 0 for lag in lags)

    def total(self) -> int | None:
        """The events a bounded run reads in all: read so far plus those left; None when
        unbounded or not :meth:`complete`."""
        left = [part.stop_at - part.position for part in self.partitions.values()
                if part.stop_at is not None]  # fmt: skip
        if not self.complete() or len(left) < len(self.partitions):
            return None
        return self.events() + sum(max(count, 0) for count in left)

    def per_partition(self, name: str) -> int:
        """``name`` (``dead_letters``, ``gaps``, ``gap_offsets``) summed over partitions."""
        return sum(getattr(part, name) for part in self.partitions.values())

    def tables(self) -> list[str]:
        """Every table with figures, sorted."""
        return sorted({table for table, _ in self.shards} | {table for table, _ in self.rows})

    def watermarks_us(self) -> dict[str, int]:
        """Each windowed table's watermark: its slowest shard's (shards before any event
        do not count)."""
        marks: dict[str, int] = {}
        for (table, _), shard in self.shards.items():
            if shard.watermark_us is not None:
                marks[table] = min(marks.get(table, shard.watermark_us), shard.watermark_us)
        return marks

    def watermark_us(self) -> int | None:
        """The slowest table's watermark; None before any."""
        return min(self.watermarks_us().values(), default=None)

    def per_table(self, name: str) -> dict[str, int]:
        """A shard figure (``open_windows``, ``late_rows``) summed per table."""
        return _summed((table, getattr(shard, name)) for (table, _), shard in self.shards.items())

    def per_shard(self, name: str) -> int:
        """A shard figure (``open_windows``, ``late_rows``) summed over every table."""
        return sum(getattr(shard, name) for shard in self.shards.values())

    def table_rows(self) -> dict[str, int]:
        """Rows handed to each table's sink."""
        return _summed((table, rows) for (table, _), rows in self.rows.items())

    def to_json(self) -> dict[str, Any]:
        """These figures as JSON values (:meth:`from_json` reads them back)."""
        return {
            "partitions": [[part, asdict(figures)] for part, figures in self.partitions.items()],
            "partition_count": self.partition_count,
            "shards": [
                [table, shard, asdict(figures)] for (table, shard), figures in self.shards.items()
            ],
            "rows": [[table, key, rows] for (table, key), rows in self.rows.items()],
            "active_at": self.active_at,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RunFigures:
        """Figures written by :meth:`to_json`; KeyError or TypeError if malformed."""
        return cls(
            {int(part): PartitionFigures(**figures) for part, figures in value["partitions"]},
            int(value["partition_count"]),
            {
                (table, int(shard)): ShardFigures(**figures)
                for table, shard, figures in value["shards"]
            },
            {(table, key): int(rows) for table, key, rows in value["rows"]},
            value["active_at"],
        )


def _summed(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for table, count in pairs:
        sums[table] = sums.get(table, 0) + count
    return sums


class RunMetrics:
    """Where one process of a run records its figures; thread-safe (bytewax workers
    share it). Each call is a few dictionary updates."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._figures = RunFigures()
        self._clock = clock
        self._lock = threading.Lock()

    def opened(self, partition: int, of: int, position: int, end: int, stop_at: int | None) -> None:
        """A reader starts ``partition`` (of ``of``) at ``position``; it ends at ``end``
        for now."""
        with self._lock:
            self._figures.partitions[partition] = PartitionFigures(position, end, stop_at)
            self._figures.partition_count = max(self._figures.partition_count, of)
            self._figures.active_at = self._clock()

    def read(self, partition: int, events: int, position: int, dead_letters: int) -> None:
        """A batch of ``events`` was read, ``dead_letters`` of them invalid."""
        with self._lock:
            part = self._partition(partition)
            part.events += events
            part.dead_letters += dead_letters
            part.position = position
            part.end = None if part.end is None else max(part.end, position)

    def polled(self, partition: int, position: int, end: int | None) -> None:
        """A reader is at ``position`` (past markers and compacted offsets too) and asks
        Kafka for messages; it saw the partition's end (if known)."""
        with self._lock:
            part = self._partition(partition)
            part.position = position
            if end is not None:
                part.end = max(end, part.end or 0, position)
            self._figures.active_at = self._clock()

    def gap(self, partition: int, missing: int, position: int) -> None:
        """``missing`` offsets were gone; reading goes on at ``position``."""
        with self._lock:
            part = self._partition(partition)
            part.gaps += 1
            part.gap_offsets += missing
            part.position = position

    def shard(
        self, table: str, shard: int, watermark_us: int | None, open_windows: int, late_rows: int
    ) -> None:
        """A shard of ``table`` processed a batch; ``late_rows`` of it were late."""
        with self._lock:
            known = self._figures.shards.get((table, shard))
            late = late_rows + (0 if known is None else known.late_rows)
            self._figures.shards[(table, shard)] = ShardFigures(watermark_us, open_windows, late)

    def rows(self, table: str, key: str, rows: int) -> None:
        """``rows`` rows of ``table`` keyed ``key`` went to its sink."""
        with self._lock:
            self._figures.rows[(table, key)] = self._figures.rows.get((table, key), 0) + rows

    def figures(self) -> RunFigures:
        """A copy of the figures now."""
        with self._lock:
            return self._figures.copy()

    def _partition(self, partition: int) -> PartitionFigures:
        return self._figures.partitions.setdefault(partition, PartitionFigures())
