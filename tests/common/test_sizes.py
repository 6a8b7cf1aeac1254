"""Human byte sizes."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.units import parse_size, shown_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", 1000),
        ("10b", 10),
        ("512KB", 512 * 1024),
        ("128MB", 128 * 2**20),
        ("128mib", 128 * 2**20),
        ("1.5g", 3 * 2**29),
        (" 2 TB ", 2 * 2**40),
    ],
)
def test_valid_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "0", "1PB", "12 megabytes", "1e6"])
def test_invalid_sizes_name_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("size", [1, 1000, 512 * 2**10, 128 * 2**20, 3 * 2**30, 2**40 + 2**20])
def test_a_shown_size_parses_back_to_itself(size: int) -> None:
    assert parse_size(shown_size(size)) == size
