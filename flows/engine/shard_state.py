"""A shard as a bytewax stateful step keeps it: its logic, its snapshot, and the ceiling
on the windows open in a process.

bytewax 0.21 snapshots, at the end of each epoch, every key of a stateful step that was
woken in it, and ``stateful_flat_map`` deep-copies the state to do so. A shard's
snapshot is its pickle instead, taken at once (the pickle is the copy), with window
states as columns (:mod:`flows.engine.packing`); and the router wakes a shard only
for batches that bring it rows or progress it has not heard of
(:func:`flows.engine.routing.route`), so a quiet run snapshots no shard at all.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass

from bytewax.operators import StatefulLogic

from common.errors import LimitError
from flows.engine.shard import Emitted, Shard, ShardInput
from flows.engine.tables import TableSpec

DEFAULT_MAX_OPEN_WINDOWS = 1_000_000
"""Windows (sessions) a process may hold open, all tables together: about 2 GiB of
windows of counts and sums (measured: 388 MiB for 200,000; more with sketches, less for
sessions)."""


@dataclass(frozen=True)
class ShardSnapshot:
    """A shard as a checkpoint keeps it: pickled at the end of an epoch, and how many
    windows (sessions) it held open then."""

    pickled: bytes
    windows: int

    def open_windows(self) -> int:
        """How many windows (sessions) the shard held open."""
        return self.windows

    def restored(self) -> Shard:
        """The shard as it was when snapshotted."""
        shard: Shard = pickle.loads(self.pickled)
        return shard


class OpenWindowCeiling:
    """The windows (sessions) open in the shards of this process, all tables together,
    and the most there may be (None: no limit). Shared by the process's workers."""

    def __init__(self, most: int | None = DEFAULT_MAX_OPEN_WINDOWS) -> None:
        self.most = most
        self._open: dict[object, int] = {}
        self._lock = threading.Lock()

    def record(self, shard: object, table: str, count: int) -> None:
        """``shard`` of ``table`` holds ``count`` open windows now; LimitError, naming the
        flag and the ways out, if that makes more than the most in this process."""
        if self.most is None:
            return
        with self._lock:
            self._open[shard] = count
            total = sum(self._open.values())
        if total > self.most:
            raise LimitError(
                f"{total:,} windows (sessions) are open in this process (the last in table "
                f"{table}), more than --max-open-windows {self.most:,} allows "
                "(EVENTLAKE_MAX_OPEN_WINDOWS). The run stops and loses nothing: its output and "
                "checkpoint stay as of the last snapshot. Resume with a higher "
                "--max-open-windows (or none) if memory allows (about 2 KiB a window of "
                "counts and sums, more with sketches), spread the keys over more "
                "--processes, or let windows close sooner (a shorter --window or "
                "--session-gap, or --max-session)"
            )


class ShardLogic(StatefulLogic[ShardInput, Emitted, ShardSnapshot]):
    """One shard of a table in a bytewax stateful step: it merges what each batch brings,
    emits what closed, and snapshots as a :class:`ShardSnapshot`."""

    def __init__(
        self, spec: TableSpec, shard: Shard, lateness_us: int, ceiling: OpenWindowCeiling
    ) -> None:
        self._spec, self._shard, self._ceiling = spec, shard, ceiling
        shard.clock.lateness_us = lateness_us  # --lateness may change between runs
        ceiling.record(self, spec.name, shard.open_windows())

    def on_item(self, value: ShardInput) -> tuple[list[Emitted], bool]:
        """Process one batch's input; the shard is always kept."""
        emitted = self._shard.process(self._spec, value)
        emitted.watermark, emitted.open_windows = self._shard.watermark, self._shard.open_windows()
        self._ceiling.record(self, self._spec.name, emitted.open_windows)
        return [emitted], StatefulLogic.RETAIN

    def snapshot(self) -> ShardSnapshot:
        """The shard pickled now: later batches cannot change it."""
        pickled = pickle.dumps(self._shard, protocol=pickle.HIGHEST_PROTOCOL)
        return ShardSnapshot(pickled, self._shard.open_windows())
