"""What every synthetic event generator shares: the base class, timestamps and buffered draws."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError
from sources.event_time import EPOCH, micros_of

DEFAULT_EVENT_RATE = 200.0
"""Events per second of event time, unless a caller asks for another rate."""

CHUNK = 4096
"""How many random numbers of one kind are drawn per vectorized call."""


T = TypeVar("T")


class GeneratorConfigError(ConfigError, ValueError):
    """Invalid generator parameters; a ``ValueError`` too, so plain callers can catch it."""


def epoch_us(t: datetime) -> int:
    """Whole microseconds since the Unix epoch of a timezone-aware datetime.

    Raises :class:`GeneratorConfigError` (a ``ValueError``) for a naive datetime.
    """
    if t.utcoffset() is None:
        raise GeneratorConfigError(
            f"naive datetime {t.isoformat()!r}: pass a timezone-aware one, e.g. tzinfo=UTC"
        )
    return micros_of(t)


def epoch_ms(t: datetime) -> int:
    """Whole milliseconds since the Unix epoch (rounded down) of a timezone-aware datetime."""
    return epoch_us(t) // 1000


@lru_cache(maxsize=1024)
def _second_prefix(second: int) -> str:
    return (EPOCH + timedelta(seconds=second)).isoformat(timespec="seconds")[:19]


def format_epoch_ms(ms: int) -> str:
    """Format milliseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    second, milli = divmod(ms, 1000)
    return f"{_second_prefix(second)}.{milli:03d}Z"


def format_ts(t: datetime) -> str:
    """ISO-8601 UTC with milliseconds (truncated) and ``Z``, e.g. ``2024-05-01T13:00:00.123Z``.

    Raises :class:`GeneratorConfigError` (a ``ValueError``) for a naive datetime.
    """
    return format_epoch_ms(epoch_ms(t))


def pick(cdf: npt.NDArray[np.float64], uniform: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Indices drawn from a discrete distribution, given its cumulative weights (last == 1)."""
    return np.searchsorted(cdf, uniform, side="right")


def cumulative(weights: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Normalised cumulative weights for :func:`pick`; the last entry is exactly 1."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


class Draws(Generic[T]):
    """Values of one random kind, drawn ``CHUNK`` at a time and handed out one by one.

    The sequence depends only on the order of calls on the shared generator, so a
    simulation that calls its ``Draws`` in a deterministic order is deterministic.
    """

    def __init__(self, draw: Callable[[int], list[T]]) -> None:
        self._draw = draw
        self._values: list[T] = []

    def __call__(self) -> T:
        """The next value."""
        if not self._values:
            self._values = self._draw(CHUNK)
            self._values.reverse()
        return self._values.pop()


class EventGenerator(ABC):
    """An infinite, seeded stream of synthetic events (dicts ready to JSON-encode).

    Event ``i`` has the nominal event time ``start + i / events_per_second``; the
    same ``(seed, start, events_per_second, other parameters)`` always yields the
    same events, and every call to :meth:`events` starts the stream afresh.
    """

    name: ClassVar[str]
    default_topic: ClassVar[str]
    key_field: ClassVar[str]

    def __init__(
        self,
        seed: int = 0,
        start: datetime | None = None,
        events_per_second: float = DEFAULT_EVENT_RATE,
    ) -> None:
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        epoch_ms(start)  # rejects a naive start
        if seed < 0:
            raise GeneratorConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if not (math.isfinite(events_per_second) and events_per_second > 0):
            raise GeneratorConfigError(
                f"events_per_second must be a positive number, got {events_per_second!r}"
            )
        self.seed = seed
        self.start = start
        self.events_per_second = float(events_per_second)

    @abstractmethod
    def events(self) -> Iterator[dict[str, Any]]:
        """All events from the first, in emission order; never ends."""

    def key_of(self, event: Mapping[str, Any]) -> bytes:
        """The Kafka message key of ``event``: its ``key_field`` value, UTF-8 encoded."""
        return str(event[self.key_field]).encode()
