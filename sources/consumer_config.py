"""How eventlake's Kafka consumers are configured: one per partition, offsets in
bytewax's checkpoints, and a prefetch budget that the consumers of a topic share."""

from __future__ import annotations

from typing import Any

from sources.target import KafkaTarget

CONSUMER_CONFIG = {
    "group.id": "eventlake",  # required by librdkafka; offsets live in bytewax state
    "enable.auto.commit": "false",
    "enable.partition.eof": "true",
    "auto.offset.reset": "error",  # a missing offset is data loss: a gap, never a silent skip
    "fetch.max.bytes": "52428800",
    # librdkafka waits 1 s to fetch again once a queue reached its prefetch limit;
    # with the small limits of prefetch_config() that would starve the reader.
    "fetch.queue.backoff.ms": "10",
}
PREFETCH_BUDGET = (200_000, 256 * 1024)
"""Messages and KiB that all consumers of a topic may prefetch together. Each
partition has a consumer of its own; with librdkafka's defaults (100,000 messages
or 64 MiB each, plus a fetch of 1 MiB in flight) a topic of 64 partitions could
buffer it all, or gigabytes. The budget holds for topics of up to
:data:`BUDGETED_PARTITIONS` partitions; beyond, each consumer takes librdkafka's least."""
FETCH_KBYTES = 1024
"""The most one consumer fetches at once (librdkafka's default ``fetch.message.max.bytes``).
librdkafka may overshoot a queue's limit by one fetch, so the fetch is part of the share."""
LEAST_KBYTES = 1
"""The least librdkafka accepts for a queue's limit, and the least fetch eventlake asks for."""
BUDGETED_PARTITIONS = PREFETCH_BUDGET[1] // (2 * LEAST_KBYTES)
"""Up to this many partitions, the consumers' queues and fetches stay within the budget."""


def prefetch_config(partitions: int) -> dict[str, int]:
    """librdkafka's prefetch limits for one of ``partitions`` consumers of a topic: an
    equal share of :data:`PREFETCH_BUDGET`, its queue and its fetch together, so that
    all consumers of a topic of up to :data:`BUDGETED_PARTITIONS` partitions stay within
    it (beyond, :data:`LEAST_KBYTES` each for the queue and the fetch)."""
    messages, kbytes = (max(budget // max(partitions, 1), 1) for budget in PREFETCH_BUDGET)
    fetch_kbytes = min(max(kbytes // 2, LEAST_KBYTES), FETCH_KBYTES)
    return {
        "queued.min.messages": messages,
        "queued.max.messages.kbytes": max(kbytes - fetch_kbytes, LEAST_KBYTES),
        "fetch.message.max.bytes": fetch_kbytes * 1024,
    }


def consumer_config(
    target: KafkaTarget, partitions: int, group: str | None = None
) -> dict[str, Any]:
    """The configuration of the consumer of one of a topic's ``partitions`` on ``target``,
    in consumer group ``group`` if it commits offsets there."""
    config = {**target.client_config(), **CONSUMER_CONFIG, **prefetch_config(partitions)}
    return config if group is None else {**config, "group.id": group}
