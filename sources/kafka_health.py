"""When the cluster misbehaves: outages are waited out and said, lost offsets are gaps.

Partitions added to a topic while a flow runs are said within a minute (reading them
needs a restart). A broker that goes away makes librdkafka retry on its own; readers report each
error to an :class:`OutageReport`, which says every few seconds that the flow
is waiting and for how long, and once that Kafka is back. Offsets a flow still
had to read but that retention (or a size limit) deleted become rows of the
``gaps`` table, or with ``--on-gap fail`` a :class:`GapError` naming the ways out.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException

from common.errors import GapError, ResourceError
from common.log import LOGGER

OnGap = Literal["continue", "fail"]
ON_GAP_CHOICES: tuple[OnGap, ...] = ("continue", "fail")
DEFAULT_ON_GAP: OnGap = "continue"
REPORT_EVERY_S = 5.0
WATCH_EVERY_S = 60.0
WATCH_TIMEOUT_S = 5.0
QUIET_S = 1.0
"""librdkafka reports a refused connection many times a second while Kafka is down;
this long without an error, and a message or end of partition, means it is back."""
OUT_OF_DESCRIPTORS = os.strerror(errno.EMFILE)
"""How librdkafka's errors say that the process may open no more files ("Too many open
files"): it reports that as a connection error, but waiting does not cure it."""


class OutageReport:
    """Shared by the partition readers of one source; thread-safe.

    :meth:`trouble` on every error a consumer reports, :meth:`fine` on every
    message or end of partition (which may come from what was fetched before).
    Says a line when trouble starts, then at most every :data:`REPORT_EVERY_S`,
    and one when Kafka answers again.
    """

    def __init__(
        self,
        servers: str,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = LOGGER.warning,
    ) -> None:
        self._servers = servers
        self._clock = clock
        self._say = say
        self._since: float | None = None
        self._said_at = self._last_error = 0.0
        self._lock = threading.Lock()

    def trouble(self, reason: str) -> None:
        """Record a transient error; say so if it is news or the last line is old."""
        with self._lock:
            now = self._last_error = self._clock()
            if self._since is None:
                self._since = now
            elif now - self._said_at < REPORT_EVERY_S:
                return
            self._said_at = now
            self._say(
                f"waiting for Kafka at {self._servers} for {now - self._since:.0f}s "
                f"({reason}); nothing is lost, reading resumes when it answers"
            )

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback: client errors (connection refused, all brokers
        down) are trouble that librdkafka retries by itself; ResourceError, naming the
        fixes, if the process may open no more files."""
        reason = error.str()
        if OUT_OF_DESCRIPTORS in reason:
            raise ResourceError(
                f"a Kafka consumer cannot open a connection to {self._servers}: {reason}. "
                "This process holds as many files as its limit allows; raise it (`ulimit -n`) "
                "or spread the partitions over more processes (--processes, or -i/-a)"
            )
        self.trouble(reason)

    def fine(self) -> None:
        """Record a message or end of partition; once no error has come for
        :data:`QUIET_S` after trouble, say that Kafka answers again."""
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._since is not None and self._clock() - self._last_error >= QUIET_S:
                down_s = self._last_error - self._since
                self._say(f"Kafka at {self._servers} answers again after {down_s:.0f}s")
                self._since = None


class PartitionWatch:
    """Says once when ``topic`` has more partitions than this run reads (they were added
    while it ran; bytewax lists a source's partitions only at start): asks the cluster
    at most every :data:`WATCH_EVERY_S`."""

    def __init__(
        self, topic: str, partitions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._clock = clock
        self._next_check = clock() + WATCH_EVERY_S
        self._said = False

    def check(self, consumer: Consumer) -> None:
        """Ask ``consumer``'s cluster if it is time; a failure waits for the next time."""
        if self._said or self._clock() < self._next_check:
            return
        self._next_check = self._clock() + WATCH_EVERY_S
        try:
            metadata = consumer.list_topics(self._topic, timeout=WATCH_TIMEOUT_S)
        except KafkaException:
            return
        now = len(metadata.topics[self._topic].partitions)
        if now > self._partitions:
            self._said = True
            LOGGER.warning(
                "topic %s now has %s partitions, %s when this run started: stop it (Ctrl-C) "
                "and run the same command again to read the new ones from their start",
                self._topic, now, self._partitions,
            )  # fmt: skip


def gap_row(
    topic: str, partition: int, expected: int, first_available: int, detected_at: datetime
) -> dict[str, object]:
    """A row of the ``gaps`` table (:data:`sources.batches.GAPS_SCHEMA`)."""
    return {
        "topic": topic,
        "partition": partition,
        "expected_offset": expected,
        "first_available_offset": first_available,
        "missing": first_available - expected,
        "detected_at": detected_at,
    }


def gap_error(topic: str, partition: int, expected: int, first_available: int) -> GapError:
    """The error of a gap under ``--on-gap fail``, naming the two ways out."""
    missing = first_available - expected
    return GapError(
        f"offsets {expected:,}..{first_available - 1:,} of {topic}[{partition}] ({missing:,} "
        "messages) were deleted from Kafka (retention or a size limit) before this flow read "
        "them. Either rerun with --on-gap continue to record them in OUT/gaps and read on from "
        f"offset {first_available:,}, or start over with a new --recovery-dir and an empty "
        "--out to read what the topic still holds"
    )
