"""A bytewax source that reads Kafka partitions in batches.

Each Kafka partition is one bytewax source partition whose state is the next
offset to read, so recovery resumes where the last snapshot left off. Every
``next_batch`` hands the flow one :class:`RawBatch` (all messages of one
consume call) instead of one item per message: per-message overhead in
bytewax is what limits throughput (see DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from sources.connection import require_topic
from sources.errors import BrokerError
from sources.progress import Progress
from sources.target import KafkaTarget

CONSUMER_CONFIG = {
    "group.id": "eventlake",  # required by librdkafka; offsets live in bytewax state
    "enable.auto.commit": "false",
    "enable.partition.eof": "true",
    "auto.offset.reset": "error",  # a missing offset is data loss: fail, never skip
    "fetch.max.bytes": "52428800",
}
BATCH_SIZE = 10_000
POLL_TIMEOUT_S = 0.5
WATERMARK_TIMEOUT_S = 10.0


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

    def append(self, message: Message) -> None:
        """Add one consumed message."""
        self.offsets.append(message.offset() or 0)
        self.keys.append(message.key())
        self.values.append(message.value())
        self.timestamps_ms.append(message.timestamp()[1])


class _PartitionReader(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        consumer: Consumer,
        topic_partition: TopicPartition,
        stop_at: int | None,
        progress: Progress | None,
    ) -> None:
        self._consumer = consumer
        self._tp = topic_partition
        self._next_offset: int = topic_partition.offset
        self._stop_at = stop_at
        self._progress = progress
        consumer.assign([topic_partition])

    def next_batch(self) -> list[RawBatch]:
        if self._stop_at is not None and self._next_offset >= self._stop_at:
            raise StopIteration
        batch = RawBatch(self._tp.topic, self._tp.partition)
        for message in self._consumer.consume(BATCH_SIZE, POLL_TIMEOUT_S):
            error = message.error()
            if error is None:
                if self._stop_at is None or (message.offset() or 0) < self._stop_at:
                    batch.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                # Offsets below the end that are never delivered (transaction
                # markers, compaction) must not keep a bounded read waiting.
                self._next_offset = max(self._next_offset, message.offset() or 0)
            else:
                raise BrokerError(f"reading {self._tp.topic}[{self._tp.partition}]: {error.str()}")
        if not batch:
            return []
        self._next_offset = max(self._next_offset, batch.offsets[-1] + 1)
        if self._progress is not None:
            self._progress.advance(len(batch))
        return [batch]

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> int:
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()


class KafkaBatchSource(FixedPartitionedSource[RawBatch, int]):
    """All partitions of ``topic``, read in batches from the earliest offset.

    With ``bounded`` the source stops at the end offsets present when the
    partition is first opened, so a bounded run reads a fixed set of messages.
    """

    def __init__(
        self,
        target: KafkaTarget,
        topic: str,
        bounded: bool,
        progress: Progress | None = None,
    ) -> None:
        self._target = target
        self._topic = topic
        self._bounded = bounded
        self._progress = progress

    def list_parts(self) -> list[str]:
        """One part per Kafka partition, named by its index."""
        return [str(index) for index in range(require_topic(self._target, self._topic))]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        """A reader of partition ``for_part`` from ``resume_state`` (else the oldest offset)."""
        consumer = Consumer({**self._target.client_config(), **CONSUMER_CONFIG})
        partition = TopicPartition(self._topic, int(for_part))
        low, high = consumer.get_watermark_offsets(partition, timeout=WATERMARK_TIMEOUT_S)
        start = low if resume_state is None else resume_state
        stop_at = high if self._bounded else None
        if stop_at is not None and self._progress is not None:
            self._progress.expect(stop_at - start)
        return _PartitionReader(
            consumer, TopicPartition(self._topic, int(for_part), start), stop_at, self._progress
        )
