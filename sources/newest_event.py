"""The newest event time the readers of one source in one process have seen."""

from __future__ import annotations

import threading


class NewestEvent:
    """The newest event time the readers of one source in this process have seen, and
    the partitions they read."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.partitions: set[int] = set()
        self._lock = threading.Lock()

    def observe(self, time_us: int) -> None:
        """Record a partition's newest event time."""
        with self._lock:
            if self.value is None or time_us > self.value:
                self.value = time_us

    def global_bound(self, partitions: int) -> int | None:
        """The newest event time read, if this process reads every one of ``partitions``
        (then no shard's watermark has passed it); None if some are read elsewhere."""
        return self.value if len(self.partitions) == partitions else None


def latest(left: int | None, right: int | None) -> int | None:
    """The larger of two event times, either possibly unknown."""
    if left is None or right is None:
        return left if right is None else right
    return max(left, right)
