"""Pipeline files: ``eventlake aggregate`` saved as TOML, with several tables per topic.

.. code-block:: toml

    topic = "flights"
    time_field = "dep_time"
    time_format = "auto"      # optional: auto, iso, epoch_s, epoch_ms
    lateness = "10m"          # optional
    strict = false            # optional

    [[aggregation]]
    table = "delays"          # optional when there is one: "windows"
    key = ["carrier"]
    value = ["dep_delay"]
    window = "1h"
    slide = "15m"             # optional: hopping windows
    agg = ["count", "mean", "p95"]
    filter = "dep_delay > 0"  # optional

    [kafka]                   # optional: librdkafka settings
    client.id = "flights"     # a dotted key names the setting, quoted or not

``session_gap = "30m"`` instead of ``window`` makes session windows;
``max_session = "1d"`` ends them at every UTC midnight too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.secrets import remember_secrets
from flows.pipelines.config import (
    AggregationConfig,
    PipelineConfig,
    aggregation_config,
    seconds,
    window_spec,
)
from flows.pipelines.flow import WINDOWS_TABLE

_TOP = {"topic", "time_field", "time_format", "lateness", "strict", "aggregation", "kafka"}
_TABLE = {"table", "key", "value", "window", "slide", "session_gap", "max_session", "agg",
          "filter"}  # fmt: skip
_DURATIONS = ("window", "slide", "session_gap", "max_session")


def load_pipeline(path: Path) -> PipelineConfig:
    """The pipeline in ``path``; ConfigError naming the file, the entry and the fix."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no pipeline file {path}; pass a .toml file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    try:
        return _pipeline(document)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _pipeline(document: dict[str, Any]) -> PipelineConfig:
    _only(document, _TOP, "the top level")
    tables = document.get("aggregation")
    if not isinstance(tables, list) or not tables:
        raise ConfigError("declare at least one [[aggregation]] table")
    configs = tuple(
        _aggregation(entry, default_name=WINDOWS_TABLE if len(tables) == 1 else None)
        for entry in tables
    )
    return PipelineConfig(
        topic=_text(document, "topic"),
        time_field=_text(document, "time_field"),
        tables=configs,
        time_format=document.get("time_format", "auto"),
        lateness_s=seconds("lateness", document["lateness"], allow_zero=True)
        if "lateness" in document
        else PipelineConfig.lateness_s,
        strict=bool(document.get("strict", False)),
        kafka=_kafka(document.get("kafka", {})),
    )


def _aggregation(entry: dict[str, Any], default_name: str | None) -> AggregationConfig:
    _only(entry, _TABLE, "[[aggregation]]")
    name = entry.get("table", default_name)
    if not isinstance(name, str):
        raise ConfigError('each of several [[aggregation]] tables needs a table = "NAME"')
    durations = [seconds(key, entry[key]) if key in entry else None for key in _DURATIONS]
    return aggregation_config(
        name,
        _names(entry, "key"),
        _names(entry, "value"),
        _names(entry, "agg") or ["count"],
        window_spec(*durations),
        entry.get("filter"),
    )


def _only(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in {where}; use {sorted(allowed)}")


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{key} = "…" is required')
    return value


def _names(entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{key} must be a list of names, e.g. {key} = ["a", "b"]')
    return value


def _kafka(table: Any) -> dict[str, str]:
    """The ``[kafka]`` table: librdkafka settings, values as text (``true``, ``5000``). An
    unquoted dotted key (``security.protocol = "SSL"``, a nested table in TOML) is the
    dotted setting it names; ConfigError if one is set twice."""
    if not isinstance(table, dict):
        raise ConfigError('[kafka] must be a table of settings, e.g. security.protocol = "SSL"')
    settings: dict[str, str] = {}
    for key, value in _dotted(table):
        if key in settings:
            raise ConfigError(
                f"[kafka] sets {key} twice, quoted and as dotted keys; keep one of them"
            )
        settings[key] = str(value).lower() if isinstance(value, bool) else str(value)
    remember_secrets(settings)
    return settings


def _dotted(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of ``table``, nested tables included, keyed by their dotted paths."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
