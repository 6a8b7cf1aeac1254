"""What defines a run, recorded in its recovery directory so a resume cannot change it.

A resume with another topic, time field, keys, window, aggregations, filter,
output directory or directory layout (``--partition-by``) would apply old
offsets and open windows to a different question, mixing both in one table.
The definition is written on a fresh run and compared on every resume: any
difference is refused before the flow runs, except the allowed lateness,
which may change (with a line saying so). Runtime settings (workers,
processes, batch size, file rolling, intervals) are not part of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from common.errors import ConfigError
from common.units import MICROS_PER_SECOND
from flows.engine.tables import TableSpec
from flows.engine.windows import Hopping, Session, Tumbling, WindowSpec
from flows.runtime.settings import FlowSettings
from sinks.recovery_store import resume_epoch

DEFINITION_FILE = "run-definition.json"
MAY_CHANGE = ("lateness",)
CHECKPOINT_FORMAT = "7"
"""The shape of the state in a checkpoint; raised whenever a release changes it."""
_FORMAT_KEY = "checkpoint format"
_TABLE_KEY = "table "


def windowed_tables(definition: dict[str, str]) -> list[str]:
    """The windowed tables of a recorded definition."""
    return [key.removeprefix(_TABLE_KEY) for key in definition if key.startswith(_TABLE_KEY)]


def describe(
    flow: str, settings: FlowSettings, time_field: str, specs: Sequence[TableSpec]
) -> dict[str, str]:
    """The definition of a run of ``flow`` with ``settings`` over the tables ``specs``."""
    definition = {
        _FORMAT_KEY: CHECKPOINT_FORMAT,
        "flow": flow,
        "topic": settings.topic,
        "output directory": str(settings.out.resolve()),
        "output layout": f"partitioned by {settings.rolling.partition_by}",
        "time field": time_field,
        "lateness": f"{settings.lateness_s:g}s",
    }
    for spec in specs:
        columns = [name for a in spec.aggregations for name, _ in a.columns()]
        definition[f"{_TABLE_KEY}{spec.name}"] = (
            f"keys {', '.join(spec.keys)}; {describe_window(spec.window)}; "
            f"columns {', '.join(columns)}; filter {spec.where}"
        )
    return definition


def describe_window(window: WindowSpec) -> str:
    """``tumbling 60s``, ``hopping 3600s every 900s``, ``session gap 1800s`` or ``session
    gap 1800s, at most 86400s``."""
    if isinstance(window, Tumbling):
        return f"tumbling {_seconds(window.size_us)}"
    if isinstance(window, Hopping):
        return f"hopping {_seconds(window.size_us)} every {_seconds(window.slide_us)}"
    assert isinstance(window, Session)
    cut = "" if window.max_us is None else f", at most {_seconds(window.max_us)}"
    return f"session gap {_seconds(window.gap_us)}{cut}"


def _seconds(micros: int) -> str:
    """Exact seconds: ``60s``, ``0.5s``, ``1000001s``."""
    whole, fraction = divmod(micros, MICROS_PER_SECOND)
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") + "s"


def check_definition(directory: Path, definition: dict[str, str]) -> list[str]:
    """Record ``definition`` in ``directory`` (a fresh run), or compare it with the
    recorded one (a resume): ConfigError naming every difference and the way out;
    else the lines to say about what may change (lateness)."""
    path = directory / DEFINITION_FILE
    recorded = _read(path)
    if recorded is None or resume_epoch(directory) is None:
        if recorded != definition:
            _write(path, definition)
        return []
    changed = sorted(key for key in recorded.keys() | definition.keys()
                     if recorded.get(key) != definition.get(key))  # fmt: skip
    _require_format(directory, recorded)
    refused = [key for key in changed if key not in MAY_CHANGE]
    if refused:
        was, now = (
            {key: text.get(key, "none") for key in refused} for text in (recorded, definition)
        )
        differences = "; ".join(
            f"{key}: {was[key]} in the checkpoint, {now[key]} now" for key in refused
        )
        raise ConfigError(
            f"--recovery-dir {directory} holds a run with another definition ({differences}); "
            "resume it with the same options, or start a new run with a new --recovery-dir "
            "and an empty --out"
        )
    if changed:
        _write(path, definition)
    return [f"{key} changed from {recorded[key]} to {definition[key]}" for key in changed]


def _require_format(directory: Path, recorded: dict[str, str]) -> None:
    """ConfigError unless the checkpoint's state has the shape this version reads."""
    if recorded.get(_FORMAT_KEY) != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"--recovery-dir {directory} holds checkpoints of another eventlake version "
            f"(format {recorded.get(_FORMAT_KEY, '1')}, this one reads {CHECKPOINT_FORMAT}), "
            "whose state it cannot resume; start a new run with a new --recovery-dir and an "
            "empty --out"
        )


def recorded_definition(directory: Path) -> dict[str, str] | None:
    """The definition of the run that checkpoints in ``directory`` (None: no run has)."""
    return _read(directory / DEFINITION_FILE)


def _read(path: Path) -> dict[str, str] | None:
    try:
        recorded: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return recorded


def _write(path: Path, definition: dict[str, str]) -> None:
    """Atomically; the processes of one run may write the same definition at once."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(definition, indent=2, sort_keys=True))
    temp.replace(path)
