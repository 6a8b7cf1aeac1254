"""A flow as a value: its name, what it reads and writes, and how to build it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bytewax.dataflow import Dataflow

from common.metrics import RunMetrics
from flows.runtime.dataflow import KAFKA_TO_PARQUET, FlowIO
from flows.runtime.settings import DEFAULT_ROLLING, FlowSettings
from sinks.table_sink import RollingPolicy
from sources.kafka_config import BOOTSTRAP, check_client_settings
from sources.target import KafkaTarget


class BuildFlow(Protocol):
    """Builds a flow's dataflow from validated settings."""

    def __call__(
        self,
        settings: FlowSettings,
        metrics: RunMetrics | None = None,
        io: FlowIO = KAFKA_TO_PARQUET,
    ) -> Dataflow:
        """The dataflow reading and writing where ``io`` says; ConfigError if ``settings``
        contradict the run's checkpoint or the tables already under ``settings.out``."""
        ...


@dataclass(frozen=True)
class Flow:
    """What ``eventlake run`` needs to run a flow; built-in flows, pipeline files and
    ``eventlake aggregate`` all make one (see :mod:`flows.registry`)."""

    name: str
    """Its name in progress lines and messages."""
    default_topic: str
    """The topic it reads when ``--topic`` is not given."""
    tables: tuple[str, ...]
    """Every table it writes, as directory names under ``--out``."""
    build: BuildFlow
    """Builds its dataflow."""
    kafka: Mapping[str, str] = field(default_factory=dict)
    """Kafka client settings it brings (a pipeline file's ``[kafka]`` table); the
    command line's win over them."""
    lateness_s: float = FlowSettings.lateness_s
    """Its allowed lateness unless ``--lateness`` says otherwise (a pipeline file's
    ``lateness``)."""

    def check(self, rolling: RollingPolicy = DEFAULT_ROLLING) -> None:
        """Build the dataflow as ``eventlake run`` would with ``rolling``, reading and
        writing nothing: ConfigError for anything in its configuration a run would
        refuse at start (fields, output layout, Kafka client settings)."""
        check_client_settings(self.kafka)
        with tempfile.TemporaryDirectory() as nowhere:
            unreached = KafkaTarget(self.kafka.get(BOOTSTRAP, "localhost:9092"))  # never asked
            settings = FlowSettings(target=unreached, topic=self.default_topic,
                                    out=Path(nowhere) / "out", bounded=True, rolling=rolling,
                                    lateness_s=self.lateness_s)  # fmt: skip
            self.build(settings)
