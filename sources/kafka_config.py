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
from common.secrets import remember_secrets, scrub, shown_setting, split_setting
from sources.target import LIBRDKAFKA_LOG

BOOTSTRAP = "bootstrap.servers"
ENV_X = "EVENTLAKE_X"
"""The environment variable of ``-X``."""


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, as ``-X`` takes them; ConfigError naming one without ``=`` (a
    secret value masked) or with a value that spans lines."""
    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ConfigError(
                f"-X {shown_setting(pair)!r} is not KEY=VALUE, e.g. -X security.protocol=SSL"
            )
        if "\n" in value.strip() or "\r" in value.strip():
            raise ConfigError(
                f"-X {key.strip()}: a value cannot span lines ({ENV_X} holds one setting per "
                "line); name a file instead, e.g. -X ssl.key.location=client.key"
            )
        settings[key.strip()] = value.strip()
    remember_secrets(settings)
    return settings


def setting_lines(text: str) -> list[str]:
    """The ``-X`` settings held in the text of :data:`ENV_X`: one per line, split at
    ``\n`` (and ``\r\n``) only, so that a value with spaces or other separators stays
    whole; blank lines skipped."""
    lines = (line.strip() for line in text.replace("\r\n", "\n").split("\n"))
    return [line for line in lines if line]


def as_setting_lines(pairs: Iterable[str]) -> str:
    """``KEY=VALUE`` ``pairs`` as :data:`ENV_X` holds them (see :func:`setting_lines`)."""
    return "\n".join(pairs)


def read_properties(path: Path) -> dict[str, str]:
    """The settings in a Java properties file: ``key=value``, ``key: value`` or ``key
    value`` per line, ``#`` and ``!`` comments, a trailing backslash joins the next line.
    Read as UTF-8, or as ISO-8859-1 (what Java's ``Properties.load`` reads) when it is not
    valid UTF-8. ConfigError naming the file if it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read --kafka-config {path}: {err.strerror}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")  # any byte is a character: this never fails
    settings = dict(split_setting(line) for line in _logical_lines(text))
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
