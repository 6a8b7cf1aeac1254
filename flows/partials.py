"""Batches of events → partial aggregates per (key, window), vectorized with Arrow.

Rows whose window may already be closed are split off first (``cutoff``), so
they can be judged late or on time where the watermark is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.tables import UTC_MICROS, Partial, TableSpec
from flows.windows import Micros, Session


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


def with_windows(records: pa.Table, assigned: Assigned) -> pa.Table:
    """The assigned rows of ``records`` plus their ``window_start``/``window_end``."""
    rows = records.take(pa.array(assigned.rows))
    rows = rows.append_column("window_start", pa.array(assigned.starts).cast(UTC_MICROS))
    return rows.append_column("window_end", pa.array(assigned.ends).cast(UTC_MICROS))


def group(spec: TableSpec, records: pa.Table, assigned: Assigned) -> list[Partial]:
    """Partial aggregates of the assigned rows, one per (key, window) (or session)."""
    if len(assigned.rows) == 0:
        return []
    derived = spec.derive(records.take(pa.array(assigned.rows)))
    if isinstance(spec.window, Session):
        return _sessions(spec, spec.window, derived, assigned.starts)
    return _windows(spec, derived, assigned)


def _group_rows(spec: TableSpec, derived: pa.Table, extra: dict[str, Micros]) -> pa.Table:
    """One row per distinct key (and ``extra`` columns) with the list of its row numbers."""
    keyed = pa.table(
        {
            **{key: derived[key] for key in spec.keys},
            **{name: pa.array(values) for name, values in extra.items()},
            "_row": pa.array(np.arange(derived.num_rows)),
        }
    )
    return keyed.group_by([*spec.keys, *extra]).aggregate([("_row", "list")])


def _windows(spec: TableSpec, derived: pa.Table, assigned: Assigned) -> list[Partial]:
    groups = _group_rows(spec, derived, {"_start": assigned.starts, "_end": assigned.ends})
    keys = list(zip(*(groups[key].to_pylist() for key in spec.keys), strict=True))
    starts, ends = groups["_start"].to_pylist(), groups["_end"].to_pylist()
    return [
        Partial(key, start, end, _states(spec, derived, pa.array(rows)))
        for key, start, end, rows in zip(
            keys, starts, ends, groups["_row_list"].to_pylist(), strict=True
        )
    ]


def _sessions(spec: TableSpec, window: Session, derived: pa.Table, ts_us: Micros) -> list[Partial]:
    groups = _group_rows(spec, derived, {})
    keys = list(zip(*(groups[key].to_pylist() for key in spec.keys), strict=True))
    partials = []
    for key, rows in zip(keys, groups["_row_list"].to_pylist(), strict=True):
        rows_by_time = np.asarray(rows)[np.argsort(ts_us[rows], kind="stable")]
        times = ts_us[rows_by_time]
        numbers = window.split(times)
        for number in range(int(numbers[-1]) + 1):
            inside = numbers == number
            start, end = int(times[inside][0]), int(times[inside][-1]) + window.gap_us
            states = _states(spec, derived, pa.array(rows_by_time[inside]))
            partials.append(Partial(key, start, end, states))
    return partials


def _states(spec: TableSpec, derived: pa.Table, rows: pa.Array) -> list[object]:
    states = []
    for aggregation in spec.aggregations:
        values = rows if aggregation.field is None else pc.take(derived[aggregation.field], rows)
        states.append(aggregation.update_batch(aggregation.initialize(), values))
    return states
