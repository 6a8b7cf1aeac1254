"""One frozen settings object per command; each field says what it controls."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flows.engine.shard_state import DEFAULT_MAX_OPEN_WINDOWS
from flows.runtime.checkpoints import Checkpointing
from flows.runtime.runner import SINGLE_PROCESS, Processes
from sinks.table_sink import RollingPolicy
from sources.connection import resolve_target
from sources.event_time import DEFAULT_MAX_FUTURE_S
from sources.generators import DEFAULT_EVENT_RATE
from sources.kafka_health import DEFAULT_ON_GAP, OnGap
from sources.kafka_source import BATCH_SIZE
from sources.producer import ProduceRequest
from sources.target import DEFAULT_BROKER_TIMEOUT_S, KafkaTarget
from sources.topics import DEFAULT_PARTITIONS

DEFAULT_ROLLING = RollingPolicy()


@dataclass(frozen=True)
class Watching:
    """How a run shows where it stands (:mod:`flows.runtime.status_line`)."""

    status_interval_s: float = 10.0
    """How often the status line is logged when stderr is not a terminal."""
    metrics_port: int | None = None
    """Serve Prometheus metrics and ``/healthz`` on this port; None: no endpoint."""
    metrics_host: str = "127.0.0.1"
    """The address the metrics endpoint listens on: this host only, unless told (e.g.
    ``0.0.0.0``, every interface, in a container)."""


@dataclass(frozen=True)
class RunOptions:
    """How any flow runs: the options ``run`` and ``aggregate`` share."""

    out: Path
    """Output directory; each table is written under ``out/<table>/``."""
    bounded: bool
    """Stop at the end offsets present at start (see :attr:`closes_windows`)."""
    final: bool = False
    """With :attr:`bounded` and checkpoints: close every window at the end (the last run
    over a finite topic), instead of keeping the open ones for the next run."""
    workers: int = 1
    """bytewax worker threads in this process."""
    max_future_s: float | None = DEFAULT_MAX_FUTURE_S
    """Events further than this ahead of the wall clock are dead letters (None: no limit)."""
    idle_timeout_s: float | None = 30.0
    """Wall-clock seconds without messages after which a partition stops holding
    the watermark back (unbounded runs only; the one non-deterministic knob)."""
    rolling: RollingPolicy = DEFAULT_ROLLING
    """When buffered output rows become a Parquet file."""
    checkpointing: Checkpointing | None = None
    """Where and how often to snapshot; None runs without fault tolerance."""
    batch_size: int = BATCH_SIZE
    """Most messages per batch (one consume call of one partition)."""
    processes: Processes = SINGLE_PROCESS
    """This process's place in a multi-process run."""
    on_gap: OnGap = DEFAULT_ON_GAP
    """Offsets deleted before they were read: record them in ``gaps`` and read on
    (``continue``), or stop with a GapError (``fail``)."""
    group: str | None = None
    """The Kafka consumer group whose offsets show the run's progress to Kafka's lag
    tools; None: ``eventlake-<flow>-<topic>``."""
    commit_offsets: bool = True
    """Commit offsets to :attr:`group` (the checkpoint stays what a resume reads)."""
    watching: Watching = Watching()
    """The status line and the metrics endpoint."""
    max_open_windows: int | None = DEFAULT_MAX_OPEN_WINDOWS
    """Windows (sessions) a process may hold open, all tables together; one more stops
    the run with a LimitError, losing nothing (None: no limit)."""

    @property
    def closes_windows(self) -> bool:
        """Whether the end of input closes every window: a bounded run that is
        :attr:`final` or has no checkpoint to keep open windows in. Otherwise a bounded
        run keeps them, as a run stopped by a signal does, and the next run continues
        them (Spark's ``Trigger.AvailableNow``)."""
        return self.bounded and (self.final or self.checkpointing is None)


@dataclass(frozen=True, kw_only=True)
class FlowSettings(RunOptions):
    """Everything a flow run by ``eventlake run`` or ``aggregate`` is given."""

    target: KafkaTarget
    """The Kafka cluster to read from."""
    topic: str
    """The topic holding the flow's input events."""
    window_s: float | None = None
    """Window length; None means the flow's default."""
    slide_s: float | None = None
    """Hop of hopping windows; None means the flow's default."""
    session_gap_s: float | None = None
    """Inactivity that ends a session; None means the flow's default."""
    max_session_s: float | None = None
    """Sessions also end at every multiple of this since the epoch, so none lasts
    longer; None: no limit."""
    lateness_s: float = 5.0
    """Allowed lateness: the watermark trails the slowest partition by this much."""
    stop: threading.Event | None = None
    """Set (by SIGINT/SIGTERM) to end the run cleanly after a last snapshot."""


@dataclass(frozen=True)
class ProduceSettings:
    """Options of ``eventlake produce``."""

    kind: str
    """Which generator: a key of :data:`sources.generators.GENERATORS`."""
    request: ProduceRequest
    """Topic, how many events, for how long, how fast."""
    seed: int = 0
    """Seed of the generator; the same seed gives the same events."""
    start: datetime | None = None
    """Event time of the first event; None means now."""
    disorder: float | None = None
    """Monitoring only: fraction of events up to a few seconds out of order."""
    event_rate: float = DEFAULT_EVENT_RATE
    """Events per second of event time when no wall-clock rate is set."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions of the topic if eventlake creates it on the embedded broker."""


@dataclass(frozen=True)
class DemoSettings:
    """Options of ``eventlake demo``."""

    out: Path
    """Output directory; the demo's tables in it are replaced on every run."""
    monitoring_events: int
    """How many monitoring events to produce."""
    analytics_events: int
    """How many analytics events to produce."""
    seed: int = 0
    """Generator seed."""


@dataclass(frozen=True, kw_only=True)
class Runtime(RunOptions):
    """The shared options of ``run`` and ``aggregate``, and where Kafka is."""

    brokers: str | None
    """``--brokers``; None means the running embedded broker."""
    state_file: Path
    """Where the embedded broker records its address."""
    broker_timeout_s: float = DEFAULT_BROKER_TIMEOUT_S
    """How long to keep trying to reach Kafka at start."""
    kafka: Mapping[str, str] = field(default_factory=dict)
    """Kafka client settings of the command line (``--kafka-config``, then ``-X``)."""

    def settings(
        self, topic: str, kafka: Mapping[str, str] = MappingProxyType({}), **flow: Any
    ) -> FlowSettings:
        """The settings of a flow reading ``topic``, with its own ``flow`` options
        (window, lateness, …), its ``kafka`` client settings (the command line's win) and
        these run options; BrokerError/ConfigError if no cluster can be found or the
        client settings are invalid (checked here, after the flow's own options)."""
        run = {option.name: getattr(self, option.name) for option in fields(RunOptions)}
        client = {**kafka, **self.kafka}
        target = resolve_target(self.brokers, self.state_file, self.broker_timeout_s, client)
        return FlowSettings(target=target, topic=topic, **run, **flow)
