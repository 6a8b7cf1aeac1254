"""What flows between the Kafka source and the flows: raw and decoded batches."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import pyarrow as pa
from confluent_kafka import Message

DEAD_LETTER_TABLE = "dead_letter"
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("error", pa.string()),
    ]
)


GAPS_TABLE = "gaps"
GAPS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("expected_offset", pa.int64()),
        ("first_available_offset", pa.int64()),
        ("missing", pa.int64()),
        ("detected_at", pa.timestamp("ms", tz="UTC")),
    ]
)
"""Offsets a flow needed that the cluster no longer had (retention, size limits)."""


@dataclass
class RawBatch:
    """Messages from one consume call on one partition, as plain picklable lists.

    ``values[i]`` is None for a tombstone. ``timestamps_ms[i]`` is the Kafka
    message timestamp.
    """

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def extend(self, messages: list[Message], stop_at: int | None = None) -> None:
        """Add consumed messages of this partition (in offset order, none an error),
        those before offset ``stop_at`` only if given; a column at a time."""
        offsets = [message.offset() or 0 for message in messages]
        if stop_at is not None and offsets and offsets[-1] >= stop_at:
            kept = bisect.bisect_left(offsets, stop_at)
            messages, offsets = messages[:kept], offsets[:kept]
        self.offsets += offsets
        self.keys += [message.key() for message in messages]
        self.values += [message.value() for message in messages]
        self.timestamps_ms += [message.timestamp()[1] for message in messages]


@dataclass
class DecodedBatch:
    """The valid rows of a raw batch, in offset order, its dead letters, and progress.

    ``partition`` of ``partitions`` is the Kafka partition read. ``max_us`` is the
    largest event time in ``records``; ``prior_max_us`` the largest in earlier
    batches of the partition. ``ended`` marks the last batch of a bounded read that
    closes every window, ``idle`` a partition that has had no messages for the idle
    timeout, and ``behind`` a batch of a partition back from idleness that may be
    behind the watermark (its rows must all be judged). ``execution`` counts the runs
    on one checkpoint: a higher one starts every partition afresh. ``stopping`` marks
    the last batch of a run that keeps its windows open for the next run: one asked
    to stop, or a bounded run on a checkpoint that is not final.
    ``gaps`` records offsets the cluster no longer had when they were to be read.
    """

    records: pa.Table
    dead_letters: list[dict[str, object]] = field(default_factory=list)
    topic: str = ""
    partition: int = 0
    partitions: int = 1
    max_us: int | None = None
    prior_max_us: int | None = None
    ended: bool = False
    idle: bool = False
    behind: bool = False
    execution: int = 0
    stopping: bool = False
    halt: bool = False
    """The last batch of a partition whose process was asked to stop (SIGINT/SIGTERM):
    every process of the run stops with it."""
    gaps: list[dict[str, object]] = field(default_factory=list)
    """Rows of :data:`GAPS_SCHEMA`: offsets found missing before this batch."""

    def dead_letter_table(self) -> pa.Table:
        """Dead letters as a table with :data:`DEAD_LETTER_SCHEMA`."""
        return pa.Table.from_pylist(self.dead_letters, schema=DEAD_LETTER_SCHEMA)

    def gap_table(self) -> pa.Table:
        """Gaps as a table with :data:`GAPS_SCHEMA`."""
        return pa.Table.from_pylist(self.gaps, schema=GAPS_SCHEMA)
