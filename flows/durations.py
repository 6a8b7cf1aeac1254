"""Human durations for flags: ``500ms``, ``30s``, ``5m``, ``1h``, ``2d`` or bare seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from sources.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a positive timedelta; bare numbers are seconds.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: write a number with a unit, e.g. 500ms, 30s, 5m, 1h, 2d"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: it must be greater than zero")
    return timedelta(seconds=seconds)
