"""A bytewax source that reads Kafka partitions in decoded batches.

Each Kafka partition is one bytewax source partition. Every ``next_batch``
hands the flow one :class:`DecodedBatch` (all messages of one consume call,
decoded with Arrow) instead of one item per message: per-message overhead in
bytewax is what limits throughput. The partition's state, the
next offset and the largest event time seen, is part of bytewax snapshots, so
a resumed run continues with the same offsets and the same watermark.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from common.errors import BrokerError
from common.log import LOGGER
from common.metrics import RunMetrics
from sources.batches import DecodedBatch, RawBatch
from sources.connection import patiently, require_topic
from sources.consumer_config import consumer_config
from sources.decode import JsonDecoder
from sources.kafka_health import (
    DEFAULT_ON_GAP,
    OnGap,
    OutageReport,
    PartitionWatch,
    gap_error,
    gap_row,
)
from sources.newest_event import NewestEvent, latest
from sources.offset_commits import GroupCommits, PartitionCommits
from sources.target import KafkaTarget

BATCH_SIZE = 10_000
POLL_TIMEOUT_S = 0.0  # take what librdkafka has prefetched; never block the worker
EMPTY_POLL_PAUSE = timedelta(milliseconds=50)
HEARTBEAT_S = 1.0
WATERMARK_TIMEOUT_S = 10.0
_OFFSET_GONE = (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)


@dataclass(frozen=True)
class PartitionPosition:
    """Where a partition's reading stands: next offset, largest event time so far."""

    next_offset: int
    max_us: int | None = None
    execution: int = 0
    """Runs (executions) that have read this partition, this one included."""


@dataclass(frozen=True)
class ReadOptions:
    """How partitions are read: bounded or not, idle timeout (seconds, None = never
    idle), the most messages one batch may hold, when to stop, what a gap does."""

    bounded: bool
    idle_timeout_s: float | None = None
    batch_size: int = BATCH_SIZE
    stop: threading.Event | None = None
    """Once set, every partition sends a last batch flagged ``stopping`` and ends."""
    on_gap: OnGap = DEFAULT_ON_GAP
    """What a gap does: a row of the gaps table and reading on, or a GapError."""
    execution: int = 1
    """This run's number on its checkpoint (one more than any before it)."""
    commits: GroupCommits | None = None
    """Where to commit durable offsets for Kafka's lag tools; None: the readers commit
    nothing."""
    closes_windows: bool = True
    """Whether a bounded read's last batch is flagged ``ended`` (every window closes),
    or ``stopping`` (open windows stay open for the next run)."""


@dataclass(frozen=True)
class _Shared:
    """What a source's readers in one process share: its figures, Kafka outages, the
    newest event time."""

    metrics: RunMetrics
    outage: OutageReport
    newest: NewestEvent


class _PartitionReader(StatefulSourcePartition[DecodedBatch, PartitionPosition]):
    def __init__(
        self,
        consumer: Consumer,
        decoder: JsonDecoder,
        template: DecodedBatch,
        position: PartitionPosition,
        stop_at: int | None,
        options: ReadOptions,
        shared: _Shared,
    ) -> None:
        self._consumer = consumer
        self._decoder = decoder
        self._template = template
        self._kafka_partition = TopicPartition(template.topic, template.partition)
        self._position = position
        self._stop_at = stop_at
        self._idle_timeout_s = None if options.bounded else options.idle_timeout_s
        self._batch_size = options.batch_size
        self._closes_windows = options.closes_windows
        self._stop = options.stop
        self._on_gap = options.on_gap
        self._shared = shared
        self._metrics = shared.metrics
        self._outage = shared.outage
        self._returned = False
        first = template.partition == 0
        self._watch = PartitionWatch(template.topic, template.partitions) if first else None
        self._gaps: list[dict[str, object]] = []
        self._gap_pending = False
        self._ended = False
        self._last_data = self._last_emit = time.monotonic()
        self._idle_sent = False
        self._awake_at: datetime | None = None
        self._commits = None if options.commits is None else PartitionCommits(
            options.commits, consumer, template.topic, template.partition
        )  # fmt: skip

    def next_batch(self) -> list[DecodedBatch]:
        if self._ended:
            raise StopIteration
        if self._watch is not None:
            self._watch.check(self._consumer)
        self._see_end()
        if self._stop is not None and self._stop.is_set():
            self._ended = True
            last = replace(
                self._template, stopping=True, halt=True, prior_max_us=self._position.max_us
            )
            return [replace(last, gaps=self._gaps)]
        raw = self._consume()
        at_end = self._stop_at is not None and self._position.next_offset >= self._stop_at
        # Nothing fetched yet: let bytewax poll the worker's other partitions meanwhile.
        self._awake_at = None if raw or at_end else datetime.now(UTC) + EMPTY_POLL_PAUSE
        if not raw and not at_end and not self._gaps:
            return self._quiet_batch()
        if self._idle_sent:  # back with events or a gap: the watermark may have moved on
            self._returned = True
        batch = self._data_batch(raw, at_end)
        self._ended = at_end
        self._last_data = self._last_emit = time.monotonic()
        self._idle_sent = False
        return [batch]

    def _see_end(self) -> None:
        """Tell the metrics the position and the partition's end offset, as librdkafka
        last fetched it (so it costs no request)."""
        _, end = self._consumer.get_watermark_offsets(self._kafka_partition, cached=True)
        position = self._position.next_offset
        self._metrics.polled(self._template.partition, position, end if end >= 0 else None)

    def _data_batch(self, raw: RawBatch, at_end: bool) -> DecodedBatch:
        """``raw`` decoded, with the partition's progress; moves the position on."""
        decoded = self._decoder.decode(raw)
        t = self._template
        max_us = latest(self._position.max_us, decoded.max_us)
        kept_open = at_end and not self._closes_windows
        batch = replace(
            decoded,
            topic=t.topic,
            partition=t.partition,
            partitions=t.partitions,
            execution=t.execution,
            prior_max_us=self._position.max_us,
            ended=at_end and not kept_open,
            stopping=kept_open,
            # A partition that never had an event must not hold the next run's
            # watermark at nothing; one that had holds it at its newest event.
            idle=kept_open and max_us is None,
            behind=self._behind(),
            gaps=self._gaps,
        )
        self._gaps = []
        self._metrics.read(
            t.partition, len(raw), self._position.next_offset, len(decoded.dead_letters)
        )
        self._position = replace(self._position, max_us=max_us)
        if max_us is not None:
            self._shared.newest.observe(max_us)
        return batch

    def _behind(self) -> bool:
        """Whether this partition, back from idleness, may be behind the watermark: its
        first batch back, and then until its newest event reaches the newest that any
        partition has read (which bounds the watermark). Only a process that reads every
        partition knows that; in a run of several processes it stays behind for good."""
        if not self._returned:
            return False
        mine = self._position.max_us
        bound = self._shared.newest.global_bound(self._template.partitions)
        caught_up = mine is not None and bound is not None and mine >= bound
        self._returned = not caught_up or self._idle_sent
        return True

    def _consume(self) -> RawBatch:
        topic, partition = self._template.topic, self._template.partition
        raw = RawBatch(topic, partition)
        if self._stop_at is not None and self._position.next_offset >= self._stop_at:
            return raw
        if self._gap_pending:
            self._skip_gap()
            return raw
        messages = self._consumer.consume(self._batch_size, POLL_TIMEOUT_S)
        if any(message.error() for message in messages):
            next_offset = self._one_by_one(messages, raw)
        else:  # the usual case, taken in whole columns
            raw.extend(messages, self._stop_at)
            next_offset = max(self._position.next_offset, raw.offsets[-1] + 1 if raw else 0)
            if messages:
                self._outage.fine()
        self._position = replace(self._position, next_offset=next_offset)
        return raw

    def _one_by_one(self, messages: list[Message], raw: RawBatch) -> int:
        """Add the messages of a consume call that holds errors to ``raw``, handling each
        error; the next offset to read."""
        topic, partition = self._template.topic, self._template.partition
        next_offset = self._position.next_offset
        for message in messages:
            error, offset = message.error(), message.offset() or 0
            if error is None:
                self._outage.fine()
                if self._stop_at is None or offset < self._stop_at:
                    raw.extend([message])
                    next_offset = max(next_offset, offset + 1)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._outage.fine()
                # Offsets below the end that are never delivered (transaction
                # markers, compaction) must not keep a bounded read waiting.
                next_offset = max(next_offset, offset)
            elif error.code() in _OFFSET_GONE:
                self._gap_pending = True
                break
            elif error.fatal() or not error.retriable():
                raise BrokerError(f"reading {topic}[{partition}]: {error.str()}")
            else:
                self._outage.trouble(error.str())
        return next_offset

    def seek_from(self, first_available: int, end: int) -> None:
        """Start reading at the position; if the cluster no longer has it, record a
        gap (or raise GapError) and start at ``first_available``; BrokerError if the
        position is past the partition's ``end`` (the topic was recreated)."""
        expected = self._position.next_offset
        if expected > end:
            topic, partition = self._template.topic, self._template.partition
            raise BrokerError(
                f"{topic}[{partition}] ends at offset {end:,}, before offset {expected:,} this "
                "flow had read to: the topic was deleted and recreated, or truncated. Start "
                "over with a new --recovery-dir and an empty --out"
            )
        if expected < first_available:
            self._record_gap(first_available)
        self._assign()

    def _skip_gap(self) -> None:
        """The next offset is gone: record a gap and read on from the oldest one left
        (if Kafka does not answer now, the next call tries again)."""
        try:
            low, high = self._consumer.get_watermark_offsets(
                self._kafka_partition, WATERMARK_TIMEOUT_S
            )
        except KafkaException as err:
            self._outage.trouble(err.args[0].str())
            return
        self._gap_pending = False
        self.seek_from(low, high)

    def _record_gap(self, first_available: int) -> None:
        topic, partition = self._template.topic, self._template.partition
        expected = self._position.next_offset
        if self._on_gap == "fail":
            raise gap_error(topic, partition, expected, first_available)
        self._gaps.append(gap_row(topic, partition, expected, first_available, datetime.now(UTC)))
        LOGGER.warning(
            "gap: offsets %s..%s of %s[%s] were deleted before they were read; recorded in "
            "the gaps table, reading on", f"{expected:,}", f"{first_available - 1:,}", topic,
            partition,
        )  # fmt: skip
        self._metrics.gap(partition, first_available - expected, first_available)
        self._position = replace(self._position, next_offset=first_available)

    def _assign(self) -> None:
        topic, partition = self._template.topic, self._template.partition
        self._consumer.assign([TopicPartition(topic, partition, self._position.next_offset)])

    def _quiet_batch(self) -> list[DecodedBatch]:
        """While no messages come: an empty batch flagged idle once the partition has
        been quiet for the idle timeout, and else one every :data:`HEARTBEAT_S`, so
        that downstream steps (file rolling by age) keep running."""
        now = time.monotonic()
        timeout = self._idle_timeout_s
        if timeout is not None and not self._idle_sent and now - self._last_data >= timeout:
            self._idle_sent, self._last_emit = True, now
            return [replace(self._template, idle=True, prior_max_us=self._position.max_us)]
        if self._stop_at is None and now - self._last_emit >= HEARTBEAT_S:
            self._last_emit = now
            return [replace(self._template, prior_max_us=self._position.max_us)]
        return []

    def next_awake(self) -> datetime | None:
        return self._awake_at

    def snapshot(self) -> PartitionPosition:
        if self._commits is not None:
            self._commits.after_snapshot()
        return self._position

    def close(self) -> None:
        if self._commits is not None:
            self._commits.at_close()
        self._consumer.close()


class KafkaBatchSource(FixedPartitionedSource[DecodedBatch, PartitionPosition]):
    """All partitions of ``topic``, read in decoded batches from the earliest offset.

    With ``options.bounded`` each partition stops at the end offset present when
    it is first opened, and its last batch is flagged ``ended`` (or ``stopping``,
    see :attr:`ReadOptions.closes_windows`).
    """

    def __init__(
        self,
        target: KafkaTarget,
        topic: str,
        decoder: JsonDecoder,
        options: ReadOptions,
        metrics: RunMetrics | None = None,
    ) -> None:
        self._target = target
        self._topic = topic
        self._decoder = decoder
        self._options = options
        outage = OutageReport(target.bootstrap_servers)
        self._shared = _Shared(metrics or RunMetrics(), outage, NewestEvent())
        self._partitions: int | None = None

    def list_parts(self) -> list[str]:
        """One part per Kafka partition, named by its index."""
        return [str(index) for index in range(self._partition_count())]

    def _partition_count(self) -> int:
        """The topic's partitions, asked of the cluster once per source."""
        if self._partitions is None:
            self._partitions = require_topic(self._target, self._topic)
        return self._partitions

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartitionPosition | None
    ) -> _PartitionReader:
        """A reader of partition ``for_part`` from ``resume_state`` (else the oldest offset)."""
        commits = self._options.commits
        group = None if commits is None else commits.group
        config = consumer_config(self._target, self._partition_count(), group)
        consumer = Consumer({**config, "error_cb": self._shared.outage.on_error})
        try:
            return self._reader(consumer, int(for_part), resume_state)
        except BaseException:
            consumer.close()
            raise

    def _reader(
        self, consumer: Consumer, index: int, resume_state: PartitionPosition | None
    ) -> _PartitionReader:
        partition = TopicPartition(self._topic, index)
        low, high = patiently(
            self._target, lambda attempt_s: consumer.get_watermark_offsets(partition, attempt_s)
        )
        position = resume_state or PartitionPosition(low)
        position = replace(position, execution=self._options.execution)
        stop_at = high if self._options.bounded else None
        self._shared.metrics.opened(
            index, self._partition_count(), position.next_offset, high, stop_at
        )
        template = DecodedBatch(
            self._decoder.schema.empty_table(),
            topic=self._topic,
            partition=index,
            partitions=self._partition_count(),
            execution=position.execution,
        )
        reader = _PartitionReader(
            consumer, self._decoder, template, position, stop_at, self._options, self._shared
        )
        reader.seek_from(low, high)
        self._shared.newest.partitions.add(index)
        return reader
