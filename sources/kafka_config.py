"""Kafka client settings beyond ``--brokers``: ``-X KEY=VALUE`` pairs, a Java properties
file (``--kafka-config``, as Kafka's own tools and kcat read), and a pipeline file's
``[kafka]`` table. They reach every client a command makes (consumers, producers,
admin); librdkafka checks them before anything starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from common.errors import ConfigError
from common.secrets import remember_secrets, scrub
from sources.target import LIBRDKAFKA_LOG

BOOTSTRAP = "bootstrap.servers"


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, as ``-X`` takes them; ConfigError naming one without ``=``."""
    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"-X {scrub(pair)!r} is not KEY=VALUE, e.g. -X security.protocol=SSL")
        settings[key.strip()] = value.strip()
    remember_secrets(settings)
    return settings


def read_properties(path: Path) -> dict[str, str]:
    """The settings in a Java properties file: ``key=value``, ``key: value`` or ``key
    value`` per line, ``#`` and ``!`` comments, a trailing backslash joins the next line.
    ConfigError naming the file if it cannot be read."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read --kafka-config {path}: {err.strerror}") from None
    settings = {}
    for line in _logical_lines(text):
        key, value = _split_property(line)
        settings[key] = value
    remember_secrets(settings)
    return settings


def _logical_lines(text: str) -> list[str]:
    """Non-blank, non-comment lines, with continued lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip() if not pending else raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _split_property(line: str) -> tuple[str, str]:
    for index, char in enumerate(line):
        if char in "=:" or char.isspace():
            value = line[index + 1 :].lstrip()
            if char.isspace() and value[:1] in ("=", ":"):
                value = value[1:].lstrip()
            return line[:index], value
    return line, ""


def check_client_settings(settings: Mapping[str, str]) -> None:
    """ConfigError with librdkafka's reason if no client can be made with ``settings``
    (an unknown key, an invalid value); secret values never appear in it."""
    try:
        Producer({**settings, "logger": LIBRDKAFKA_LOG})
    except KafkaException as err:
        reason = err.args[0].str() if err.args else str(err)
        raise ConfigError(
            f"invalid Kafka client setting: {scrub(reason)}; fix -X, --kafka-config or [kafka]"
        ) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid Kafka client setting: {scrub(str(err))}") from None
