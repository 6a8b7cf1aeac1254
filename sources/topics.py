"""Topic specifications (``NAME[:PARTITIONS]``) with Kafka's naming rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import ConfigError

DEFAULT_PARTITIONS = 8
_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: a legal Kafka name and a positive partition count."""

    name: str
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if not _LEGAL_NAME.fullmatch(self.name) or self.name in {".", ".."}:
            raise ConfigError(
                f"invalid topic name {self.name!r}: use 1-249 characters from "
                "letters, digits, '.', '_' and '-'"
            )
        if self.partitions < 1:
            raise ConfigError(f"topic {self.name!r}: partitions must be at least 1")

    def __str__(self) -> str:
        return f"{self.name}:{self.partitions}"


def parse_topic_spec(text: str) -> TopicSpec:
    """Parse ``NAME`` or ``NAME:PARTITIONS``; raise :class:`ConfigError` naming the fix."""
    name, sep, count = text.strip().partition(":")
    if not sep:
        return TopicSpec(name)
    if not count.isdigit():
        raise ConfigError(f"invalid topic {text!r}: write NAME or NAME:PARTITIONS, e.g. events:16")
    return TopicSpec(name, int(count))


def parse_topic_list(text: str) -> list[TopicSpec]:
    """Parse a comma-separated list of topic specs; an empty string gives no topics."""
    return [parse_topic_spec(part) for part in text.split(",") if part.strip()]
