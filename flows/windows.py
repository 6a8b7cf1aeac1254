"""Event-time windows aligned to the Unix epoch; a window covers ``[start, end)``.

Times are integer microseconds since the epoch throughout the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sources.errors import ConfigError

Micros = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Tumbling:
    """Fixed, non-overlapping windows of ``size_us``."""

    size_us: int

    def __post_init__(self) -> None:
        if self.size_us <= 0:
            raise ConfigError("--window must be greater than zero")

    def assign(self, ts_us: Micros) -> tuple[Micros, Micros]:
        """(row index, window start) for every window each timestamp falls in."""
        return np.arange(len(ts_us)), ts_us - ts_us % self.size_us

    def earliest_end(self, ts_us: Micros) -> Micros:
        """End of the earliest window each timestamp belongs to."""
        return ts_us - ts_us % self.size_us + self.size_us


@dataclass(frozen=True)
class Hopping:
    """Windows of ``size_us`` starting every ``slide_us``; each event is in several."""

    size_us: int
    slide_us: int

    def __post_init__(self) -> None:
        if self.slide_us <= 0 or self.size_us <= 0:
            raise ConfigError("--window and --slide must be greater than zero")
        if self.slide_us > self.size_us:
            raise ConfigError("--slide must not be larger than --window")

    def assign(self, ts_us: Micros) -> tuple[Micros, Micros]:
        """(row index, window start) for every window each timestamp falls in."""
        newest = ts_us - ts_us % self.slide_us
        rows, starts = [], []
        for back in range(self._windows_per_event):
            start = newest - back * self.slide_us
            inside = start + self.size_us > ts_us
            rows.append(np.flatnonzero(inside))
            starts.append(start[inside])
        return np.concatenate(rows), np.concatenate(starts)

    @property
    def _windows_per_event(self) -> int:
        return -(-self.size_us // self.slide_us)

    def earliest_end(self, ts_us: Micros) -> Micros:
        """End of the earliest window each timestamp belongs to."""
        newest = ts_us - ts_us % self.slide_us
        oldest = newest - (self._windows_per_event - 1) * self.slide_us
        oldest = np.where(oldest + self.size_us > ts_us, oldest, oldest + self.slide_us)
        return oldest + self.size_us


@dataclass(frozen=True)
class Session:
    """Per-key sessions: events closer than ``gap_us`` belong to one session.

    A session covers ``[first event, last event + gap)``; two sessions of a key
    that come to overlap are merged.
    """

    gap_us: int

    def __post_init__(self) -> None:
        if self.gap_us <= 0:
            raise ConfigError("--session-gap must be greater than zero")

    def earliest_end(self, ts_us: Micros) -> Micros:
        """End of the shortest session each timestamp can belong to."""
        return ts_us + self.gap_us

    def split(self, ts_us: Micros) -> Micros:
        """Session number of each timestamp of one key (sorted ascending)."""
        if len(ts_us) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(np.diff(ts_us) >= self.gap_us)])


WindowSpec = Tumbling | Hopping | Session
