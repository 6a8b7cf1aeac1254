"""What one of eventlake's Kafka consumers costs its process: descriptors and threads.

librdkafka gives every client two threads of its own, one per broker it knows and a
logical one for the group coordinator, a wake-up pipe (two descriptors) per broker
thread, and a socket per connection. Measured on the embedded broker: 8 descriptors and 4
threads per consumer on one broker, 12 and 6 on three; committing offsets adds none. A
run's consumers are measured, not assumed: one made as the readers make theirs is counted
(Linux's ``/proc``) before, and once it has reached the leader of a partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from sources.connection import patiently
from sources.consumer_config import consumer_config
from sources.target import KafkaTarget

PROCESS = Path("/proc/self")
SETTLE_S = 0.1
"""How long a new consumer is watched for what it holds: a few milliseconds after it has
found the cluster's brokers, librdkafka drops the thread, pipe and socket of the bootstrap
broker it found them through."""
_SETTLE_POLL_S = 0.005


@dataclass(frozen=True)
class ConsumerCost:
    """What one consumer holds while it reads."""

    descriptors: int
    """Pipes and sockets, and a socket to every other broker (the leader of its
    partition may move; librdkafka keeps idle connections)."""
    threads: int


def open_descriptors() -> int:
    """How many files (sockets and pipes included) this process has open."""
    return _entries(PROCESS / "fd")


def running_threads() -> int:
    """How many threads this process runs (librdkafka's included)."""
    return _entries(PROCESS / "task")


def _entries(directory: Path) -> int:
    return sum(1 for _ in directory.iterdir())


def _held() -> tuple[int, int]:
    """Open descriptors and running threads."""
    return open_descriptors(), running_threads()


def measure_consumer(target: KafkaTarget, topic: str, partitions: int) -> ConsumerCost | None:
    """The cost of a consumer of one of the ``partitions`` of ``topic`` on ``target``,
    measured on a consumer made for it and closed again; None where the system has no
    ``/proc`` to count with. Kafka is asked :func:`~sources.connection.patiently`."""
    if not PROCESS.is_dir():
        return None
    before = _held()
    consumer = Consumer(consumer_config(target, partitions))
    try:
        metadata = patiently(target, lambda attempt_s: consumer.list_topics(topic, attempt_s))
        first = TopicPartition(topic, 0)
        patiently(target, lambda attempt_s: consumer.get_watermark_offsets(first, attempt_s))
        descriptors, threads = _settled(before)
    finally:
        consumer.close()
    return ConsumerCost(descriptors + len(metadata.brokers) - 1, threads)


def _settled(before: tuple[int, int]) -> tuple[int, int]:
    """The least descriptors and threads held beyond ``before`` over :data:`SETTLE_S`."""
    descriptors, threads = _held()
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        time.sleep(_SETTLE_POLL_S)
        now_descriptors, now_threads = _held()
        descriptors, threads = min(descriptors, now_descriptors), min(threads, now_threads)
    return descriptors - before[0], threads - before[1]
