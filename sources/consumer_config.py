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
or 64 MiB each) a topic of 64 partitions could buffer it all, or gigabytes."""
PREFETCH_FLOOR = (1_000, 1024)
"""The least one consumer prefetches, in messages and KiB."""


def prefetch_config(partitions: int) -> dict[str, int]:
    """librdkafka's prefetch limits for one of ``partitions`` consumers of a topic: a
    share of :data:`PREFETCH_BUDGET`, at least :data:`PREFETCH_FLOOR`."""
    (messages, kbytes), (least_messages, least_kbytes) = PREFETCH_BUDGET, PREFETCH_FLOOR
    share = max(partitions, 1)
    return {
        "queued.min.messages": max(messages // share, least_messages),
        "queued.max.messages.kbytes": max(kbytes // share, least_kbytes),
    }


def consumer_config(
    target: KafkaTarget, partitions: int, group: str | None = None
) -> dict[str, Any]:
    """The configuration of the consumer of one of a topic's ``partitions`` on ``target``,
    in consumer group ``group`` if it commits offsets there."""
    config = {**target.client_config(), **CONSUMER_CONFIG, **prefetch_config(partitions)}
    return config if group is None else {**config, "group.id": group}
