"""Which event times a flow accepts: finite, representable, windowable, not far ahead.

Times are integer microseconds since the epoch. A time is accepted when every
window it falls in starts in year 1 or later and ends in year 9999 or earlier
(so every timestamp the engine writes is one Arrow, Parquet and Python can
hold), and, with a far-future limit, when it is at most that far ahead of the
wall clock: one event from a broken clock must not become the watermark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from common.errors import InvalidMessageError
from common.units import MICROS_PER_SECOND, UTC_MICROS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros_of(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch of a timezone-aware datetime."""
    return (moment - EPOCH) // _MICROSECOND


EARLIEST_US = micros_of(datetime(1, 1, 1, tzinfo=UTC))
LATEST_US = micros_of(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
DEFAULT_MAX_FUTURE_S = 86_400.0
"""``--max-future``: events more than a day ahead of the wall clock are dead letters."""
_SECONDS_PER_YEAR = 365.25 * 86_400


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class TimeGuard:
    """The event times one flow accepts (see the module docstring).

    ``reach_us`` is the flow's widest window (or session gap); ``max_future_s``
    None accepts any time the windows can hold.
    """

    max_future_s: float | None = None
    reach_us: int = 0
    clock: Callable[[], datetime] = utc_now

    def check(self, times_us: npt.NDArray[np.int64]) -> None:
        """Return if every time is accepted, else raise InvalidMessageError saying
        why the first rejected one is not."""
        if not len(times_us):
            return
        now_us = micros_of(self.clock())
        latest = LATEST_US - self.reach_us
        if self.max_future_s is not None:
            latest = min(latest, now_us + round(self.max_future_s * MICROS_PER_SECOND))
        rejected = (times_us < EARLIEST_US + self.reach_us) | (times_us > latest)
        if rejected.any():
            raise InvalidMessageError(self._reason(int(times_us[rejected.argmax()]), now_us))

    def check_column(self, times: pa.ChunkedArray | pa.Array) -> None:
        """:meth:`check` for a timestamp column without nulls."""
        column = times.cast(UTC_MICROS).cast(pa.int64())
        self.check(np.asarray(column.to_numpy(), dtype=np.int64))

    def _reason(self, time_us: int, now_us: int) -> str:
        shown = format_micros(time_us)
        if time_us < EARLIEST_US + self.reach_us:
            return f"time {shown} is too early: its windows would start before the year 1"
        if time_us > LATEST_US - self.reach_us:
            return f"time {shown} is too late: its windows would end after the year 9999"
        ahead = _span((time_us - now_us) / MICROS_PER_SECOND)
        return (
            f"time {shown} is {ahead} ahead of now (more than --max-future "
            f"{_span(self.max_future_s or 0)}); fix the producer's clock, or raise --max-future"
        )


def epoch_micros(numbers: pa.Array, micros_per_unit: pa.Array | float) -> pa.Array:
    """Epoch numbers (no nulls) times ``micros_per_unit``, as UTC timestamps.

    Raises InvalidMessageError for a number that is not finite or whose time
    no timestamp can hold, instead of an Arrow overflow.
    """
    scaled = pc.multiply(numbers.cast(pa.float64()), micros_per_unit)
    values = np.asarray(scaled.to_numpy(zero_copy_only=False), dtype=np.float64)
    usable = np.isfinite(values) & (np.abs(values) < 2.0**62)
    if not usable.all():
        first = numbers[int((~usable).argmax())].as_py()
        raise InvalidMessageError(f"time {first!r} is not a finite epoch time a timestamp can hold")
    return pc.round(scaled).cast(pa.int64()).cast(UTC_MICROS)


def format_micros(time_us: int) -> str:
    """ISO-8601 text of a time in microseconds, for any int64 (years beyond 9999 too)."""
    return f"{np.datetime64(time_us, 'us')}Z"


def _span(seconds: float) -> str:
    """A duration in its largest sensible unit: ``7975 years``, ``3 days``, ``90s``."""
    for unit, size in (("years", _SECONDS_PER_YEAR), ("days", 86_400.0), ("hours", 3600.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f}s"
