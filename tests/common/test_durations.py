"""Human durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common.errors import ConfigError
from common.units import parse_duration, shown_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("30", timedelta(seconds=30)),
        ("1.5m", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        (" 5 m ", timedelta(minutes=5)),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "m", "5 minutes", "-1s", "0s", "1w", "1e3"])
def test_invalid_durations_name_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_zero_is_a_duration_only_where_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    assert shown_duration(0) == "0s"
    with pytest.raises(ConfigError, match="greater than zero"):
        parse_duration("0")
