"""Send generated events to Kafka at a steady rate, with progress and a summary."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from common.errors import BrokerError
from common.progress import Progress
from sources.connection import low_watermarks
from sources.generators import EventGenerator
from sources.target import KafkaTarget

PRODUCER_CONFIG = {
    # zstd level 6 stores JSON events in ~26 bytes each, 1.8x fewer than lz4:
    # that is what fits 200k events in one partition of the embedded broker.
    "compression.type": "zstd",
    "compression.level": "6",
    "partitioner": "murmur2_random",  # the Java client's: same key, same partition
    "linger.ms": "20",
    "batch.size": "1000000",
    "queue.buffering.max.messages": "500000",
    "enable.idempotence": "true",  # retries never duplicate or reorder events
}
_MAX_CHUNK = 5_000
_FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ProduceRequest:
    """How many events to send, for how long, and how fast.

    ``count`` and ``duration_s`` both None means: until SIGINT/SIGTERM.
    ``rate`` None means as fast as the broker accepts them.
    """

    topic: str
    count: int | None = None
    duration_s: float | None = None
    rate: float | None = None


@dataclass(frozen=True)
class ProduceReport:
    """What was delivered: ``sent`` events acknowledged by Kafka in ``seconds``.

    ``dropped`` counts the oldest messages of the topic that the broker deleted
    while we produced (the embedded broker's size limit, or retention).
    ``stopped`` says the run was ended early through the ``stop`` event.
    """

    sent: int
    seconds: float
    dropped: int = 0
    stopped: bool = False

    @property
    def events_per_s(self) -> float:
        """Average delivered events per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class _DeliveryTracker:
    """Counts acknowledged and failed deliveries, from librdkafka callbacks."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        self.first_error = self.first_error or err


def produce(
    generator: EventGenerator,
    target: KafkaTarget,
    request: ProduceRequest,
    progress: Progress,
    stop: threading.Event | None = None,
) -> ProduceReport:
    """Send events from ``generator`` to ``request.topic`` and wait for delivery.

    Setting ``stop`` ends an unbounded run early (the CLI sets it on SIGINT).
    Returns only after every sent event is acknowledged; raises
    :class:`BrokerError` naming the first failure if any event was not.
    """
    producer = Producer({**target.client_config(), **PRODUCER_CONFIG})
    lows_before = low_watermarks(target, request.topic)
    tracker = _DeliveryTracker()
    stop = stop or threading.Event()
    started = time.monotonic()
    sent = 0
    for chunk in paced_chunks(generator.events(), request, stop):
        for event in chunk:
            key, value = generator.key_of(event), encode_event(event)
            if not _send(producer, request.topic, key, value, tracker, stop):
                break
            sent += 1
        producer.poll(0)
        progress.advance(len(chunk))
    remaining = producer.flush(_FLUSH_TIMEOUT_S)
    elapsed = time.monotonic() - started
    if tracker.failed or remaining:
        raise BrokerError(
            f"{tracker.failed + remaining:,} of {sent:,} events were not delivered to "
            f"{request.topic!r} ({tracker.first_error or 'flush timed out'}); "
            "check the broker and retry"
        )
    lows_after = low_watermarks(target, request.topic)
    dropped = sum(after - before for before, after in zip(lows_before, lows_after, strict=True))
    return ProduceReport(tracker.delivered, elapsed, dropped, stop.is_set())


def encode_event(event: dict[str, Any]) -> bytes:
    """An event as the producer sends it: compact JSON."""
    return json.dumps(event, separators=(",", ":")).encode()


def _send(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    on_delivery: Callable[[KafkaError | None, Message], None],
    stop: threading.Event,
) -> bool:
    """Queue one message, waiting while the local queue is full; False if stopped first."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return True
        except BufferError:
            if stop.is_set():
                return False
            producer.poll(0.05)  # local queue full: let deliveries drain


def paced_chunks(
    events: Iterator[dict[str, Any]],
    request: ProduceRequest,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of ``events`` released so that ``request`` holds.

    With a rate, chunk k is released no earlier than ``sent_before_k / rate``
    seconds after start, and a duration caps the total at ``duration * rate``
    events; without one, chunks follow each other until the count or the
    duration is reached. ``sleep(seconds)`` returns True to stop early
    (default: ``stop.wait``).
    """
    sleep = sleep or stop.wait
    started = clock()
    limit = request.count
    if request.rate is not None and request.duration_s is not None:
        limit = math.ceil(request.duration_s * request.rate)
    sent = 0
    while not stop.is_set():
        size = (
            _chunk_size(request.rate)
            if limit is None
            else min(_chunk_size(request.rate), limit - sent)
        )
        elapsed = clock() - started
        if size <= 0 or (request.duration_s is not None and elapsed >= request.duration_s):
            return
        if request.rate is not None:
            ahead = sent / request.rate - elapsed
            if ahead > 0 and sleep(ahead):
                return
        chunk = list(islice(events, size))
        sent += len(chunk)
        yield chunk


def _chunk_size(rate: float | None) -> int:
    """About 50 chunks per second when paced, so the rate is smooth."""
    return _MAX_CHUNK if rate is None else max(1, min(_MAX_CHUNK, int(rate / 50)))
