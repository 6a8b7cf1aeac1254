"""Offsets committed to a Kafka consumer group, so that Kafka's own lag tools
(``kafka-consumer-groups --describe``, Burrow, kafka-lag-exporter) see a flow.

The checkpoint stays authoritative: a resume reads its offsets from the checkpoint,
never from the group. The group never runs ahead of what is safe: with checkpoints,
each reader commits the offsets of the last durable one after each snapshot, and the
command those of the last one after the run; without, the command commits where each
partition stopped once a bounded run has written every table, and a run that fails or
is stopped (its open windows lost) commits nothing.
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
    """Where the readers of a run with checkpoints commit: consumer group ``group``;
    ``durable(partition)`` is the partition's next offset in the last durable checkpoint."""

    group: str
    durable: DurableOffsets


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
    offset after each snapshot."""

    def __init__(self, commits: GroupCommits, consumer: Consumer, topic: str, partition: int):
        self._commits = commits
        self._consumer = consumer
        self._topic = topic
        self._partition = partition
        self._committed: int | None = None

    def after_snapshot(self) -> None:
        """Commit the partition's durable offset if it moved (in the background)."""
        offset = self._commits.durable(self._partition)
        if offset is not None and offset != self._committed:
            commit_offsets(self._consumer, self._topic, {self._partition: offset})
            self._committed = offset

    def at_close(self) -> None:
        """Release the recovery store; the command commits the last durable offsets
        after the run."""
        self._commits.durable.close()
