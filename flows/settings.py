"""One frozen settings object per command; each field says what it controls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sources.target import KafkaTarget


@dataclass(frozen=True)
class FlowSettings:
    """Options shared by every flow run by ``eventlake run``."""

    target: KafkaTarget
    """The Kafka cluster to read from."""
    topic: str
    """The topic holding the flow's input events."""
    out: Path
    """Output directory; each table is written under ``out/<table>/``."""
    bounded: bool
    """Stop at the end offsets present at start, emitting every window."""
    workers: int = 1
    """bytewax worker threads in this process."""
