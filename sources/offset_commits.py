"""Offsets committed to a Kafka consumer group, so that Kafka's own lag tools
(``kafka-consumer-groups --describe``, Burrow, kafka-lag-exporter) see a flow.

The checkpoint stays authoritative: a resume reads its offsets from the checkpoint,
never from the group. The group shows where the flow durably is: with checkpoints,
the offsets of the last durable one, after each snapshot and at the end of a run;
without, where each partition stopped, at the end of a bounded run or a clean stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from common.log import LOGGER
from sources.target import KafkaTarget


class DurableOffsets(Protocol):
    """Each partition's next offset in the last durable checkpoint (None if none)."""

    def __call__(self, partition: int) -> int | None:
        """The offset; reading it may open the recovery store."""
        ...

    def close(self) -> None:
        """Release the recovery store (a later call opens it again)."""
        ...


@dataclass(frozen=True)
class GroupCommits:
    """Where a run commits its offsets: consumer group ``group``; ``durable(partition)``
    is the partition's next offset in the last durable checkpoint (None without
    checkpoints: each reader commits where it stopped)."""

    group: str
    durable: DurableOffsets | None = None


def commit_offsets(
    consumer: Consumer, topic: str, offsets: Mapping[int, int], wait: bool = False
) -> None:
    """Commit ``offsets`` (partition → next offset to read) of ``topic`` to the
    consumer's group; in the background unless ``wait``. A failure is logged, never
    raised: the checkpoint, not the group, is what a resume reads."""
    if not offsets:
        return
    partitions = [TopicPartition(topic, part, offset) for part, offset in offsets.items()]
    try:
        if wait:
            consumer.commit(offsets=partitions, asynchronous=False)
        else:
            consumer.commit(offsets=partitions, asynchronous=True)
    except KafkaException as err:
        LOGGER.warning("could not commit offsets of %s to its consumer group: %s", topic, err)


def commit_with_own_consumer(
    target: KafkaTarget, group: str, topic: str, offsets: Mapping[int, int]
) -> None:
    """:func:`commit_offsets` with a consumer of its own, and wait for it (after a run)."""
    consumer = Consumer({**target.client_config(), "group.id": group})
    try:
        commit_offsets(consumer, topic, offsets, wait=True)
    finally:
        consumer.close()


class PartitionCommits:
    """What the reader of one partition commits to the run's consumer group: the durable
    offset after each snapshot, or, without checkpoints, where it stopped."""

    def __init__(self, commits: GroupCommits, consumer: Consumer, topic: str, partition: int):
        self._commits = commits
        self._consumer = consumer
        self._topic = topic
        self._partition = partition
        self._committed: int | None = None

    def after_snapshot(self) -> None:
        """Commit the partition's durable offset if it moved (in the background)."""
        if self._commits.durable is None:
            return
        offset = self._commits.durable(self._partition)
        if offset is not None and offset != self._committed:
            commit_offsets(self._consumer, self._topic, {self._partition: offset})
            self._committed = offset

    def at_close(self, next_offset: int) -> None:
        """Without checkpoints, commit ``next_offset`` (where the reader stopped) and
        wait; with them, the command commits the last durable offsets after the run."""
        if self._commits.durable is None:
            commit_offsets(self._consumer, self._topic, {self._partition: next_offset}, wait=True)
        else:
            self._commits.durable.close()
