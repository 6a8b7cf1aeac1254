"""Human byte sizes for flags: ``512KB``, ``128MB``, ``1GB`` or bare bytes.

Units are binary, as in Spark and Flink: ``1MB`` is 2**20 bytes (``MiB`` is
accepted too).
"""

from __future__ import annotations

import re

from sources.errors import ConfigError

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse ``text`` into a positive number of bytes; bare numbers are bytes.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(
            f"invalid size {text!r}: write a number with a unit, e.g. 512KB, 128MB, 1GB"
        )
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if size <= 0:
        raise ConfigError(f"invalid size {text!r}: it must be at least one byte")
    return size
