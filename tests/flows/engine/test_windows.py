"""Window assignment: tumbling, hopping and session windows aligned to the epoch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import ConfigError
from flows.engine.windows import Hopping, Session, Tumbling

MINUTE = 60_000_000
times = st.lists(st.integers(min_value=-(10**15), max_value=10**15), min_size=1, max_size=50)


@given(times)
def test_tumbling_puts_each_event_in_the_window_containing_it(ts: list[int]) -> None:
    ts_us = np.array(ts, dtype=np.int64)
    rows, starts = Tumbling(MINUTE).assign(ts_us)
    assert list(rows) == list(range(len(ts)))
    assert all(start % MINUTE == 0 for start in starts)
    assert all(start <= t < start + MINUTE for start, t in zip(starts, ts_us, strict=True))


@given(times, st.sampled_from([(10, 1), (10, 3), (4, 4), (60, 15)]))
def test_hopping_puts_each_event_in_every_window_containing_it(
    ts: list[int], shape: tuple[int, int]
) -> None:
    size, slide = shape[0] * MINUTE, shape[1] * MINUTE
    ts_us = np.array(ts, dtype=np.int64)
    rows, starts = Hopping(size, slide).assign(ts_us)
    for index, t in enumerate(ts):
        mine = sorted(starts[rows == index])
        first = (t - t % slide) - ((size - 1) // slide) * slide
        expected = [s for s in range(first, t + 1, slide) if s <= t < s + size]
        assert mine == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Tumbling(0), "--window"),
        (lambda: Hopping(MINUTE, 2 * MINUTE), "--slide must not be larger"),
        (lambda: Session(0), "--session-gap"),
    ],
)
def test_invalid_windows_name_the_flag(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()  # type: ignore[operator]
