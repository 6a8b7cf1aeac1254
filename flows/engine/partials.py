"""Batches of events → partial aggregates per (key, window), vectorized with Arrow.

:func:`closes_at` tells when each (row, window) pair becomes late; the engine
uses it to send rows whose window may already be closed as rows, to be judged
at the shard, where the watermark is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.units import UTC_MICROS
from flows.engine.tables import Partial, TableSpec
from flows.engine.windows import Micros, Session


@dataclass(frozen=True)
class Assigned:
    """Rows of a batch paired with windows: row ``rows[i]`` falls in ``[starts[i], ends[i])``.

    For sessions the window is the shortest session of the event, ``[ts, ts + gap)``.
    """

    rows: Micros
    starts: Micros
    ends: Micros

    def select(self, mask: np.ndarray) -> Assigned:
        """The pairs where ``mask`` holds."""
        return Assigned(self.rows[mask], self.starts[mask], self.ends[mask])


def event_micros(records: pa.Table, time_field: str) -> Micros:
    """Event times of ``records`` as microseconds since the epoch."""
    column = records[time_field].cast(UTC_MICROS).cast(pa.int64())
    return np.asarray(column.to_numpy(), dtype=np.int64)


def assign(spec: TableSpec, ts_us: Micros) -> Assigned:
    """Every (row, window) pair of a batch for ``spec``'s window."""
    if isinstance(spec.window, Session):
        return Assigned(np.arange(len(ts_us)), ts_us, ts_us + spec.window.gap_us)
    rows, starts = spec.window.assign(ts_us)
    return Assigned(rows, starts, starts + spec.window.size_us)


def closes_at(spec: TableSpec, starts: Micros, ends: Micros) -> Micros:
    """Per (row, window): the watermark at which the row becomes late.

    A window's row is late once the watermark reaches the window's end. An
    event of a session is late once the watermark passes the event itself
    (unless it falls within a still-open session of its key, which the shard checks):
    a session may grow while the watermark is inside its gap.
    """
    return starts + 1 if isinstance(spec.window, Session) else ends


def with_windows(records: pa.Table, assigned: Assigned) -> pa.Table:
    """The assigned rows of ``records`` plus their ``window_start``/``window_end``."""
    rows = records.take(pa.array(assigned.rows))
    rows = rows.append_column("window_start", pa.array(assigned.starts).cast(UTC_MICROS))
    return rows.append_column("window_end", pa.array(assigned.ends).cast(UTC_MICROS))


def group(spec: TableSpec, records: pa.Table, assigned: Assigned) -> list[Partial]:
    """Partial aggregates of the assigned rows, one per (key, window).

    Grouping is vectorized (numpy over dictionary codes of the keys); each
    aggregation then computes the states of all groups in one call.
    """
    if len(assigned.rows) == 0:
        return []
    derived = spec.derive(records.take(pa.array(assigned.rows)))
    codes, values = key_codes(spec, derived)
    ids, starts, ends = _window_groups(codes, assigned)
    count = len(starts)
    first_row = np.full(count, len(ids), dtype=np.int64)
    np.minimum.at(first_row, ids, np.arange(len(ids)))
    keys = [tuple(map(list.__getitem__, values, row)) for row in codes[first_row].tolist()]
    states = [
        aggregation.update_groups(
            pa.array(np.arange(len(ids)))
            if aggregation.field is None
            else derived[aggregation.field],
            ids,
            count,
        )
        for aggregation in spec.aggregations
    ]
    per_group = zip(*states, strict=True) if states else ([] for _ in range(count))
    return [
        Partial(key, start, end, list(group_states))
        for key, start, end, group_states in zip(
            keys, starts.tolist(), ends.tolist(), per_group, strict=True
        )
    ]


def key_codes(spec: TableSpec, derived: pa.Table) -> tuple[np.ndarray, list[list[Any]]]:
    """Each row's key as integer codes (one column per key field), and the values per
    code: ``tuple(values[i][codes[row, i]] ...)`` is the row's key, as partials have it."""
    encoded = [pc.dictionary_encode(derived[key].combine_chunks()) for key in spec.keys]
    values = [[*column.dictionary.to_pylist(), None] for column in encoded]
    return _codes(encoded), values


def key_ids(spec: TableSpec, table: pa.Table) -> np.ndarray:
    """One integer per row of ``table``, equal for rows with equal keys."""
    codes = _codes([pc.dictionary_encode(table[key].combine_chunks()) for key in spec.keys])
    if codes.shape[1] == 1:
        return codes[:, 0]
    return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)


def _codes(encoded: list[pa.DictionaryArray]) -> np.ndarray:
    """Dictionary indices of each column, one column each; the code after the last
    value stands for null."""
    codes = [
        np.asarray(column.indices.fill_null(len(column.dictionary)).to_numpy(), dtype=np.int64)
        for column in encoded
    ]
    return np.column_stack(codes)


def _window_groups(codes: np.ndarray, assigned: Assigned) -> tuple[Micros, Micros, Micros]:
    """Group number of each row by (key, window); each group's start and end."""
    order = np.lexsort((assigned.starts, *codes.T[::-1]))
    sorted_codes, sorted_starts = codes[order], assigned.starts[order]
    changed = np.any(sorted_codes[1:] != sorted_codes[:-1], axis=1)
    new_group = np.concatenate([[True], changed | (sorted_starts[1:] != sorted_starts[:-1])])
    bounds = np.flatnonzero(new_group)
    return _ids(order, new_group), sorted_starts[bounds], assigned.ends[order][bounds]


def _ids(order: Micros, new_group: np.ndarray) -> Micros:
    """Group numbers in original row order, from rows sorted by ``order``."""
    ids = np.empty(len(order), dtype=np.int64)
    ids[order] = np.cumsum(new_group) - 1
    return ids
