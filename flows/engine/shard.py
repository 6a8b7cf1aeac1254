"""The state of one shard of a windowed table: watermark, open windows, closing.

Every batch of every source partition reaches every shard (most carry no rows
for it), so each shard sees each partition's progress in order and computes
the same watermark: the minimum over source partitions of their maximum event
time, minus the allowed lateness. Partitions at end of input, or idle, do not
hold it back. A window is emitted once, when the watermark passes its end;
rows for windows already past the watermark are late and never merged.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from flows.engine.packing import packed, unpacked
from flows.engine.partials import Assigned, closes_at, event_micros, group
from flows.engine.tables import Partial, TableSpec
from flows.engine.windows import reach_us

NEVER = -(2**62)
"""A watermark before any event time."""
END_OF_TIME = 2**62
"""The watermark once every partition has ended."""
HELD_MAX = (64, 100_000)
"""Tables and rows a shard holds at most: beyond either, it groups them all into
partials (safe, their windows are open), so a slow stream with long windows holds
partials, not every row."""


@dataclass
class ShardInput:
    """What one source batch brings to one shard.

    ``partials`` are windows certainly still open; so are the windows of ``rows``
    (with ``window_start``/``window_end``), sent as rows when partials would be about
    one per row. ``maybe_late`` holds rows whose windows may have closed. ``max_us``
    is the batch's maximum event time (None for an empty batch).
    """

    partition: int
    partitions: int
    max_us: int | None = None
    ended: bool = False
    idle: bool = False
    execution: int = 0
    stopping: bool = False
    """The partition's last batch in this run; its windows stay open for the next."""
    partials: list[Partial] = field(default_factory=list)
    rows: pa.Table | None = None
    maybe_late: pa.Table | None = None


@dataclass
class PartitionClock:
    """Per-partition progress in event time, and the watermark it allows."""

    lateness_us: int
    partitions: int = 0
    maxima: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    idle: set[int] = field(default_factory=set)
    stopped: set[int] = field(default_factory=set)
    """Partitions done for this run, their windows kept open for the next."""
    execution: int = 0
    """The newest run seen: the first batch of a later run starts every partition
    afresh (none has ended, stopped or is idle)."""

    def observe(self, batch: ShardInput) -> bool:
        """Record a batch: its maximum event time, end of input, stop, or idleness; whether
        it told anything new (observing a batch that did not changes nothing)."""
        before = self._facts(batch.partition)
        if batch.execution > self.execution:
            self.execution = batch.execution
            self.ended.clear()
            self.idle.clear()
            self.stopped.clear()
        self.partitions = max(self.partitions, batch.partitions)
        if batch.max_us is not None:
            self.maxima[batch.partition] = max(
                self.maxima.get(batch.partition, NEVER), batch.max_us
            )
            self.idle.discard(batch.partition)
        if batch.idle:
            self.idle.add(batch.partition)
        if batch.ended:
            self.ended.add(batch.partition)
        if batch.stopping:
            self.stopped.add(batch.partition)
        return self._facts(batch.partition) != before

    def _facts(self, partition: int) -> tuple[object, ...]:
        """What a batch of ``partition`` can change: the run, the partition count and the
        partition's own progress (a later run clears the others' too, and is news itself)."""
        flags = (partition in self.ended, partition in self.idle, partition in self.stopped)
        return self.execution, self.partitions, self.maxima.get(partition), *flags

    def run_over(self) -> bool:
        """Whether every partition has ended or stopped: nothing more comes in this run."""
        done = self.ended | self.stopped
        return bool(self.partitions) and all(p in done for p in range(self.partitions))

    def watermark(self, reach_us: int) -> int:
        """Event time (µs) before which every window may be closed.

        The slowest active partition's newest event minus the lateness. Ended
        and idle partitions do not count; when the rest are idle it follows the
        newest event seen, so a lull never flushes windows that may still grow.
        A stopped partition counts with its newest event, so the next run's events
        are judged as if the run had never been cut.
        When every partition has ended it passes every window: the newest event
        plus ``reach_us`` (the longest a window reaches past an event of it), so a
        later run judges events of those windows late instead of emitting them twice.
        """
        everyone = range(self.partitions)
        if self.partitions and all(p in self.ended for p in everyone):
            newest_event = max(self.maxima.values(), default=NEVER)
            return newest_event + reach_us if newest_event > NEVER else NEVER
        active = [p for p in everyone if p not in self.ended and p not in self.idle]
        known = [self.maxima.get(p, NEVER) for p in active] or list(self.maxima.values())
        newest = min(known) if active else max(known, default=NEVER)
        return newest - self.lateness_us if newest > NEVER else NEVER


@dataclass
class Emitted:
    """What a shard hands downstream after one batch: output rows of the windows it
    closed (None if none), late rows, and where the shard stands."""

    closed: pa.Table | None = None
    late: pa.Table | None = None
    late_watermark: int = NEVER
    """The watermark the late rows were judged against."""
    watermark: int = NEVER
    """The shard's watermark after the batch."""
    open_windows: int = 0
    """Windows (or sessions) open in the shard after the batch."""


@dataclass
class HeldRows:
    """Rows of open windows kept as they came (with ``window_start``/``window_end``),
    until the watermark reaches the moment they could be late (:func:`closes_at`: a
    window's end, a session event): grouping them then costs once, not every batch."""

    tables: list[pa.Table] = field(default_factory=list)
    until: int = END_OF_TIME
    """The earliest such moment among the held rows."""

    def add(self, spec: TableSpec, rows: pa.Table) -> pa.Table | None:
        """Hold ``rows``. Beyond :data:`HELD_MAX` it holds nothing more and returns every
        held row, to be grouped now (safe: their windows are open)."""
        self.tables.append(rows)
        self.until = min(self.until, int(_closes_at(spec, rows).min()))
        most_tables, most_rows = HELD_MAX
        if len(self.tables) <= most_tables and self.rows() <= most_rows:
            return None
        held, self.tables, self.until = pa.concat_tables(self.tables), [], END_OF_TIME
        return held

    def take_due(self, spec: TableSpec, watermark: int) -> pa.Table | None:
        """The held rows ``watermark`` has reached, no longer held (None if none)."""
        if not self.tables or self.until > watermark:
            return None
        rows = pa.concat_tables(self.tables)
        closing = _closes_at(spec, rows)
        due = closing <= watermark
        kept = rows.filter(pa.array(~due))
        self.tables = [kept] if kept.num_rows else []
        self.until = int(closing[~due].min()) if kept.num_rows else END_OF_TIME
        return rows.filter(pa.array(due))

    def rows(self) -> int:
        """How many rows are held."""
        return sum(table.num_rows for table in self.tables)


class Shard(ABC):
    """The state of one shard of a table: its clock, its watermark and what is open."""

    def __init__(self, lateness_us: int) -> None:
        self.clock = PartitionClock(lateness_us)
        self.watermark = NEVER
        """Never decreases: windows it has passed are closed for good."""
        self.held = HeldRows()

    @abstractmethod
    def process(self, spec: TableSpec, batch: ShardInput) -> Emitted:
        """Merge a batch, advance the watermark, and emit the windows it closed."""

    @abstractmethod
    def open_windows(self) -> int:
        """How many windows (sessions) are open; rows held but not merged yet not counted."""

    @abstractmethod
    def _absorb(self, spec: TableSpec, rows: pa.Table) -> None:
        """Merge ``rows`` (with their windows, none late) into what is open."""

    def _hold(self, spec: TableSpec, rows: pa.Table) -> None:
        """Hold a batch's rows; beyond :data:`HELD_MAX`, absorb everything held."""
        if rows.num_rows:
            full = self.held.add(spec, rows)
            if full is not None:
                self._absorb(spec, full)

    def _settle(self, spec: TableSpec, batch: ShardInput) -> bool:
        """Observe ``batch``'s progress and absorb the held rows the watermark has
        reached, or every held row once the run is over (so that what the checkpoint
        keeps open is merged and counted); whether the watermark moved."""
        moved = self._advance(spec, batch)
        over = self.clock.run_over()
        if moved or over:
            due = self.held.take_due(spec, END_OF_TIME if over else self.watermark)
            if due is not None:
                self._absorb(spec, due)
        return moved

    def _on_time(self, spec: TableSpec, rows: pa.Table, emitted: Emitted) -> pa.Table:
        """The ``rows`` (with their windows) that are not late; the late ones go to
        ``emitted``, with the watermark they were judged against."""
        late = _closes_at(spec, rows) <= self.watermark
        if late.any():
            late &= ~self._still_open(spec, rows)
        emitted.late_watermark = self.watermark
        if late.any():
            emitted.late = rows.filter(pa.array(late))
        return rows.filter(pa.array(~late))

    def _still_open(self, spec: TableSpec, rows: pa.Table) -> np.ndarray:
        """Which ``rows`` behind the watermark still join an open window: none, unless a
        kind of window says otherwise."""
        return np.zeros(rows.num_rows, dtype=bool)

    def _advance(self, spec: TableSpec, batch: ShardInput) -> bool:
        """Observe ``batch``'s progress; whether the watermark moved."""
        self.clock.observe(batch)
        previous = self.watermark
        self.watermark = max(previous, self.clock.watermark(reach_us(spec.window)))
        return self.watermark > previous


class WindowShard(Shard):
    """Open tumbling or hopping windows of the keys routed to one shard; it pickles its
    windows as columns (:mod:`flows.engine.packing`). (Sessions:
    :class:`flows.engine.sessions.SessionShard`.)"""

    def __init__(self, lateness_us: int) -> None:
        super().__init__(lateness_us)
        self.open: dict[tuple[Any, ...], dict[int, Partial]] = {}
        """Each key's open windows by their start."""
        self._closing: dict[int, set[tuple[tuple[Any, ...], int]]] = {}
        """(key, window start) by the end of their window."""
        self._ends: list[int] = []
        """A heap of the ends in ``_closing``, so closing costs the windows it closes
        rather than every open window."""

    def process(self, spec: TableSpec, batch: ShardInput) -> Emitted:
        emitted = Emitted()
        if batch.maybe_late is not None and batch.maybe_late.num_rows:
            self._absorb(spec, self._on_time(spec, batch.maybe_late, emitted))
        for partial in batch.partials:
            self._add(spec, partial)
        if batch.rows is not None:
            self._hold(spec, batch.rows)
        if self._settle(spec, batch):
            closed = self._close(self.watermark)
            emitted.closed = spec.rows(closed) if closed else None
        return emitted

    def open_windows(self) -> int:
        return sum(len(windows) for windows in self._closing.values())

    def _absorb(self, spec: TableSpec, rows: pa.Table) -> None:
        for partial in _grouped(spec, rows):
            self._add(spec, partial)

    def __getstate__(self) -> dict[str, Any]:
        state = {name: value for name, value in vars(self).items()
                 if name not in ("open", "_closing", "_ends")}  # fmt: skip
        state["packed"] = packed([w for windows in self.open.values() for w in windows.values()])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        windows = unpacked(state.pop("packed"))
        vars(self).update(state)
        self.open, self._closing, self._ends = {}, {}, []
        for window in windows:
            self.open.setdefault(window.key, {})[window.start] = window
            self._closes(window)

    def _add(self, spec: TableSpec, partial: Partial) -> None:
        self._closes(self._merge(spec, partial))

    def _closes(self, window: Partial) -> None:
        """Note when open ``window`` closes."""
        windows = self._closing.get(window.end)
        if windows is None:
            windows = self._closing[window.end] = set()
            heapq.heappush(self._ends, window.end)
        windows.add((window.key, window.start))

    def _merge(self, spec: TableSpec, partial: Partial) -> Partial:
        """Merge ``partial`` into the open windows of its key; the window it ended up in."""
        windows = self.open.setdefault(partial.key, {})
        existing = windows.get(partial.start)
        partial = partial if existing is None else spec.merge(existing, partial)
        windows[partial.start] = partial
        return partial

    def _close(self, watermark: int) -> list[Partial]:
        due: set[tuple[tuple[Any, ...], int]] = set()
        while self._ends and self._ends[0] <= watermark:
            due |= self._closing.pop(heapq.heappop(self._ends))
        closed: list[Partial] = []
        for key, start in due:
            windows = self.open.get(key, {})
            window = windows.get(start)
            if window is None:
                continue  # already closed
            closed.append(windows.pop(start))
            if not windows:
                del self.open[key]
        return sorted(closed, key=lambda w: (w.end, w.start))


def _closes_at(spec: TableSpec, rows: pa.Table) -> np.ndarray:
    """:func:`closes_at` of rows that carry their window."""
    return closes_at(spec, event_micros(rows, "window_start"), event_micros(rows, "window_end"))


def _grouped(spec: TableSpec, rows: pa.Table) -> list[Partial]:
    """Partials of ``rows`` that carry their window (``window_start``/``window_end``)."""
    assigned = Assigned(
        rows=np.arange(rows.num_rows),
        starts=event_micros(rows, "window_start"),
        ends=event_micros(rows, "window_end"),
    )
    return group(spec, rows.drop_columns(["window_start", "window_end"]), assigned)
