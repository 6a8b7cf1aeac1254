"""Session windows as columns: the open sessions of a shard in one table of states.

A session of a key is a run of its events less than a gap apart, the window
``[first event, last event + gap)``, or up to the session's cut if that comes first
(:meth:`~flows.engine.windows.Session.cut_after`: sessions of a key in different cuts
never overlap, so they never merge). The shard keeps one row per open session
(key columns, start, end, and a column of states per aggregation); a batch's
events become sessions of their own and merge with the open ones in a few
numpy calls, whatever the number of sessions, and closed sessions leave as
output rows without a Python object per session.

An event behind the watermark joins a session only if it falls inside the span
of an open session of its key (one that moved a session's start back could
reach into a session already emitted); otherwise it is late.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from flows.engine.columnar import state_layout
from flows.engine.partials import event_micros, key_ids
from flows.engine.shard import Emitted, Shard, ShardInput
from flows.engine.tables import TableSpec
from flows.engine.windows import Micros, Session


@dataclass(frozen=True)
class Sessions:
    """Sessions, one per row: key columns, ``[starts, ends)`` (µs), and their states."""

    keys: pa.Table
    starts: Micros
    ends: Micros
    states: list[np.ndarray]
    """State columns (:func:`~flows.engine.columnar.state_layout`)."""

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, indices: np.ndarray) -> Sessions:
        """The sessions at ``indices``, in that order."""
        return Sessions(
            self.keys.take(pa.array(indices)),
            self.starts[indices],
            self.ends[indices],
            [column[indices] for column in self.states],
        )

    def then(self, other: Sessions) -> Sessions:
        """These sessions followed by ``other``'s (of the same table)."""
        return Sessions(
            pa.concat_tables([self.keys, other.keys]),
            np.concatenate([self.starts, other.starts]),
            np.concatenate([self.ends, other.ends]),
            [np.concatenate(pair) for pair in zip(self.states, other.states, strict=True)],
        )


def sessions_of(spec: TableSpec, rows: pa.Table, ts_us: Micros) -> Sessions:
    """The sessions of events ``rows`` (event times ``ts_us``) on their own."""
    assert isinstance(spec.window, Session)
    derived = spec.derive(rows)
    keys = key_ids(spec, derived)
    order = np.lexsort((ts_us, keys))
    starts, cuts = ts_us[order], spec.window.cut_after(ts_us[order])
    new_session = _new_key(keys[order])
    new_session[1:] |= (np.diff(starts) >= spec.window.gap_us) | (cuts[1:] != cuts[:-1])
    bounds = np.flatnonzero(new_session)
    ends = np.maximum.reduceat(starts, bounds) + spec.window.gap_us
    return Sessions(
        derived.select(list(spec.keys)).take(pa.array(order[bounds])),
        starts[bounds],
        np.minimum(ends, cuts[bounds]),
        state_layout(spec.aggregations).states(derived, order, bounds),
    )


def merged(spec: TableSpec, sessions: Sessions, keys: np.ndarray | None = None) -> Sessions:
    """``sessions`` with those of one key that overlap merged into one; ``keys`` are their
    :func:`~flows.engine.partials.key_ids` if already known."""
    keys = key_ids(spec, sessions.keys) if keys is None else keys
    order = np.lexsort((sessions.starts, keys))
    starts, ends = sessions.starts[order], sessions.ends[order]
    new_key = _new_key(keys[order])
    new_session = new_key.copy()
    new_session[1:] |= starts[1:] >= _running_max(new_key, ends)[:-1]
    bounds = np.flatnonzero(new_session)
    return Sessions(
        sessions.keys.take(pa.array(order[bounds])),
        starts[bounds],
        np.maximum.reduceat(ends, bounds),
        state_layout(spec.aggregations).merged(sessions.states, order, bounds),
    )


def _merged_into(spec: TableSpec, sessions: Sessions, fresh: Sessions) -> Sessions:
    """``sessions`` with ``fresh`` merged in; the sessions of keys not in ``fresh`` are
    only copied."""
    keys = key_ids(spec, pa.concat_tables([sessions.keys, fresh.keys]))
    open_keys, fresh_keys = keys[: len(sessions)], keys[len(sessions) :]
    touched = np.isin(open_keys, fresh_keys)
    untouched = sessions.take(np.flatnonzero(~touched))
    merging = sessions.take(np.flatnonzero(touched)).then(fresh)
    merging_keys = np.concatenate([open_keys[touched], fresh_keys])
    return untouched.then(merged(spec, merging, merging_keys))


def _new_key(sorted_keys: np.ndarray) -> np.ndarray:
    """Where a new key begins in sorted key ids."""
    return np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])


def _running_max(segment_start: np.ndarray, values: Micros) -> Micros:
    """The maximum of ``values`` so far within each segment (a segment begins where
    ``segment_start`` holds), on ranks so that no offset can overflow."""
    distinct, ranks = np.unique(values, return_inverse=True)
    segments = np.cumsum(segment_start) - 1
    scale = len(distinct)
    running = np.maximum.accumulate(segments * scale + ranks.reshape(-1))
    maxima: Micros = distinct[running - segments * scale]
    return maxima


def _inside(spec: TableSpec, sessions: Sessions, rows: pa.Table, ts_us: Micros) -> np.ndarray:
    """Whether each event of ``rows`` falls in ``[start, end)`` of one of ``sessions``
    of its key (the sessions of a key do not overlap)."""
    keys = key_ids(spec, pa.concat_tables([sessions.keys, rows.select(list(spec.keys))]))
    session_keys, row_keys = keys[: len(sessions)], keys[len(sessions) :]
    times, ranks = np.unique(np.concatenate([sessions.starts, ts_us]), return_inverse=True)
    ranks = ranks.reshape(-1)
    points = np.concatenate([session_keys, row_keys]) * len(times) + ranks
    session_points, row_points = points[: len(sessions)], points[len(sessions) :]
    order = np.argsort(session_points)
    before = np.searchsorted(session_points[order], row_points, side="right") - 1
    candidate = order[np.maximum(before, 0)]
    same_key = (before >= 0) & (session_keys[candidate] == row_keys)
    inside: np.ndarray = same_key & (ts_us < sessions.ends[candidate])
    return inside


class SessionShard(Shard):
    """Open sessions of the keys routed to one shard, as :class:`Sessions`; picklable.

    Sessions reach it as events (``ShardInput.rows`` and ``maybe_late``), never as
    partials. It holds events until the watermark reaches them (an event younger than
    the watermark cannot reach a session closing now), then merges them in bulk, and
    emits a session once, when the watermark passes its end.
    """

    def __init__(self, lateness_us: int) -> None:
        super().__init__(lateness_us)
        self.open: Sessions | None = None

    def process(self, spec: TableSpec, batch: ShardInput) -> Emitted:
        assert not batch.partials, "sessions travel as events"
        emitted = Emitted()
        if batch.maybe_late is not None and batch.maybe_late.num_rows:
            self._absorb(spec, self._on_time(spec, batch.maybe_late, emitted))
        if batch.rows is not None:
            self._hold(spec, batch.rows)
        if self._settle(spec, batch) and self.open is not None:
            emitted.closed = self._close(spec)
        return emitted

    def open_windows(self) -> int:
        return 0 if self.open is None else len(self.open)

    def _absorb(self, spec: TableSpec, events: pa.Table) -> None:
        """Merge ``events`` (with ``window_start``, their event time) into the open sessions."""
        if not events.num_rows:
            return
        fresh = sessions_of(spec, events, event_micros(events, "window_start"))
        self.open = fresh if self.open is None else _merged_into(spec, self.open, fresh)

    def _still_open(self, spec: TableSpec, rows: pa.Table) -> np.ndarray:
        """Events inside an open session of their key join it, even behind the watermark."""
        if self.open is None:
            return super()._still_open(spec, rows)
        return _inside(spec, self.open, rows, event_micros(rows, "window_start"))

    def _close(self, spec: TableSpec) -> pa.Table | None:
        assert self.open is not None
        closing = self.open.ends <= self.watermark
        if not closing.any():
            return None
        done = self.open.take(np.flatnonzero(closing))
        remaining = np.flatnonzero(~closing)
        self.open = self.open.take(remaining) if len(remaining) else None
        done = done.take(np.lexsort((done.starts, done.ends)))
        results = state_layout(spec.aggregations).results(done.states)
        return spec.rows_of_columns(done.keys, done.starts, done.ends, results)
