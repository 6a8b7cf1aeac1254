"""Event-time windows aligned to the Unix epoch; a window covers ``[start, end)``.

Times are integer microseconds since the epoch throughout the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError

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


LONGEST_SESSION_US = 3_650_000 * 86_400 * 1_000_000
"""The longest ``--max-session``, 10,000 years: every cut of an event time stays within
int64."""


@dataclass(frozen=True)
class Session:
    """Per-key sessions: events closer than ``gap_us`` belong to one session.

    A session covers ``[first event, last event + gap)``; two sessions of a key
    that come to overlap are merged. With ``max_us``, sessions also end at every
    multiple of it since the epoch (at UTC midnight for a day, as Google Analytics
    ends sessions), so none lasts longer: the event after such an end starts a new
    session.
    """

    gap_us: int
    max_us: int | None = None

    def __post_init__(self) -> None:
        if self.gap_us <= 0:
            raise ConfigError("--session-gap must be greater than zero")
        if self.max_us is not None and not 0 < self.max_us <= LONGEST_SESSION_US:
            raise ConfigError("--max-session must be greater than zero and at most 3650000d")

    def cut_after(self, times: Micros) -> Micros:
        """The cut after each of ``times``: the next multiple of ``max_us``, the latest a
        session holding it may end (without ``max_us``, the largest time: none)."""
        if self.max_us is None:
            return np.full(len(times), np.iinfo(np.int64).max)
        return (times // self.max_us + 1) * self.max_us


WindowSpec = Tumbling | Hopping | Session


def reach_us(window: WindowSpec) -> int:
    """How far a window reaches from any event in it: its length, or a session's gap
    (a session ends one gap after its last event)."""
    return window.gap_us if isinstance(window, Session) else window.size_us
