"""The consume ceilings of ``make bench``: ``python -m benchmarks.consume MODE BOOTSTRAP
TOPIC PARTITIONS COUNT`` reads COUNT messages of TOPIC from its start, taking each
message's value, and exits; nothing else. MODE ``batch`` consumes 10,000 messages per
call (the fastest a Python consumer reads); ``poll`` takes one message per ``poll()``,
the loop of confluent-kafka's documentation."""

from __future__ import annotations

import sys
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition

TIMEOUT_S = 10.0


def _batch(consumer: Consumer, wanted: int) -> list[Message]:
    return consumer.consume(min(10_000, wanted), TIMEOUT_S)  # type: ignore[no-any-return]


def _poll(consumer: Consumer, wanted: int) -> list[Message]:
    message = consumer.poll(TIMEOUT_S)
    return [] if message is None else [message]


READS: dict[str, Callable[[Consumer, int], list[Message]]] = {"batch": _batch, "poll": _poll}


def consume(mode: str, bootstrap: str, topic: str, partitions: int, count: int) -> None:
    """Read ``count`` messages of ``topic``; SystemExit if it holds fewer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    read, seen = READS[mode], 0
    while seen < count:
        messages = read(consumer, count - seen)
        if not messages:
            raise SystemExit(f"{topic} holds {seen:,} messages, not {count:,}")
        for message in messages:
            message.value()
        seen += len(messages)
    consumer.close()


if __name__ == "__main__":
    mode, bootstrap, topic, partitions, count = sys.argv[1:]
    consume(mode, bootstrap, topic, int(partitions), int(count))
