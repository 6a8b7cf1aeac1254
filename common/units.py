"""Units every stage shares: the engine's time unit (microseconds), and the human
durations and byte sizes of flags and pipeline files.

Durations: ``500ms``, ``30s``, ``5m``, ``1h``, ``2d`` or bare seconds. Sizes:
``512KB``, ``128MB``, ``1GB`` or bare bytes; units are binary, as in Spark and
Flink: ``1MB`` is 2**20 bytes (``MiB`` is accepted too).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyarrow as pa

from common.errors import ConfigError

MICROS_PER_SECOND = 1_000_000
"""Microseconds per second: the engine's unit of time."""
UTC_MICROS = pa.timestamp("us", tz="UTC")
"""The Arrow type of every timestamp the engine writes."""

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)


def micros(seconds: float) -> int:
    """Seconds as whole microseconds."""
    return round(seconds * MICROS_PER_SECOND)


def parse_duration(text: str, allow_zero: bool = False) -> timedelta:
    """Parse ``text`` into a positive timedelta (or zero, with ``allow_zero``); bare
    numbers are seconds.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: write a number with a unit, e.g. 500ms, 30s, 5m, 1h, 2d"
        )
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds == 0 and not allow_zero:
        raise ConfigError(f"invalid duration {text!r}: it must be greater than zero")
    return timedelta(seconds=seconds)


def shown_duration(seconds: float | None) -> str:
    """A duration as ``--help`` and messages show it: ``1d``, ``5m``, ``30s``, ``0.5s``
    (``none`` for no limit)."""
    if seconds is None:
        return "none"
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


def shown_age(seconds: float) -> str:
    """How long ago, to the two largest units: ``0.4s``, ``45s``, ``3m12s``, ``2h05m``,
    ``3d04h``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86_400, "h", 3600), ("h", 3600, "m", 60),
                                              ("m", 60, "s", 1)):  # fmt: skip
        if whole >= size:
            return f"{whole // size}{unit}{whole % size // smaller_size:02d}{smaller}"
    return f"{whole}s"


def percent_label(quantile: float) -> str:
    """A quantile as a percent in a column name: ``p99`` for 0.99, ``p99_9`` for 0.999."""
    label = f"{quantile * 100:g}".replace(".", "_")
    return f"p{label}"


def shown_size(size: int) -> str:
    """A byte size as ``--help`` shows it: ``128MB``, ``512KB``, ``1000`` bytes."""
    for unit in "tgmk":
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit.upper()}B"
    return str(size)


def parse_size(text: str) -> int:
    """Parse ``text`` into a positive number of bytes; bare numbers are bytes.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(
            f"invalid size {text!r}: write a number with a unit, e.g. 512KB, 128MB, 1GB"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    if size <= 0:
        raise ConfigError(f"invalid size {text!r}: it must be at least one byte")
    return size
