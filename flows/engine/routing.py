"""Windowed tables as bytewax steps: route partial aggregates to shards, close windows.

Per batch: assign windows and pre-aggregate per (key, window) with Arrow
(:mod:`flows.engine.partials`), send each shard its partials plus the batch's
progress, and let the shard merge, advance its watermark and emit the windows
it closed (:mod:`flows.engine.shard`). Rows whose window may already be closed travel
as rows and are judged at the shard: merged if still open, else late. A batch
that spreads thin (a backfill: a year of one partition in one batch; sessions
of users whose events are spread over every partition) would make about one
partial per row; its rows travel as rows too, and the shard groups them once
the watermark has passed them.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
import numpy as np
import pyarrow as pa
from bytewax.dataflow import Stream

from common.units import UTC_MICROS
from flows.engine.partials import (
    Assigned,
    assign,
    closes_at,
    event_micros,
    group,
    key_codes,
    with_windows,
)
from flows.engine.sessions import SessionShard
from flows.engine.shard import (
    END_OF_TIME,
    NEVER,
    Emitted,
    PartitionClock,
    Shard,
    ShardInput,
    WindowShard,
)
from flows.engine.shard_state import OpenWindowCeiling, ShardLogic, ShardSnapshot
from flows.engine.tables import TableSpec
from flows.engine.windows import Session, reach_us
from sources.batches import DecodedBatch

SHARDS = 16
"""Stateful shards per table; keys are spread over them by a stable hash."""
ROWS_PER_WINDOW = 4
"""A batch with fewer rows than this per distinct window sends rows, not partials."""


def shards_step(table: str) -> str:
    """The name of the step whose state is the shards of windowed ``table``."""
    return f"{table}_windows"


def shards_state(flow: str, table: str) -> str:
    """The step id under which bytewax 0.21 keeps the shards of windowed ``table`` of
    ``flow`` (:class:`~flows.engine.shard_state.ShardSnapshot` per shard key)."""
    return f"{flow}.{shards_step(table)}.stateful_batch"


def shard_of(key: tuple[Any, ...]) -> int:
    """A key's shard, the same in every process and run (unlike ``hash``)."""
    return _shard_of_text(repr(key))


@functools.lru_cache(maxsize=1 << 17)
def _shard_of_text(text: str) -> int:
    """The shard of a key written as ``repr`` writes it; the keys seen last are
    remembered (users, devices: a key comes back batch after batch). Cached on the text,
    not the key: ``(1,)`` and ``(True,)`` are equal keys to a cache but not to repr."""
    return zlib.crc32(text.encode()) % SHARDS


@dataclass(frozen=True)
class Windowed:
    """The streams of one windowed table: closed-window rows and late rows (keyed by
    shard), and everything each shard emitted (where it stands, for the run's figures)."""

    rows: Stream[tuple[str, pa.Table]]
    late: Stream[tuple[str, pa.Table]]
    emitted: Stream[tuple[str, Emitted]]


def late_schema(event_schema: pa.Schema) -> pa.Schema:
    """Late rows: the event's fields, the window it missed, and why."""
    return (
        event_schema.append(pa.field("window_start", UTC_MICROS))
        .append(pa.field("window_end", UTC_MICROS))
        .append(pa.field("table", pa.string()))
        .append(pa.field("watermark", UTC_MICROS))
        .append(pa.field("reason", pa.string()))
    )


def route(
    spec: TableSpec,
    time_field: str,
    lateness_us: int,
    batch: DecodedBatch,
    floor_us: int | None = None,
    rows_per_window: float = ROWS_PER_WINDOW,
    told: PartitionClock | None = None,
) -> list[tuple[str, ShardInput]]:
    """One input per shard: its partials or rows, its possibly-late rows, and the
    batch's progress. With ``told`` (the progress told so far, which the batch adds
    to), only shards that get rows, unless the progress is news: a heartbeat wakes none.

    ``floor_us`` is the newest event time in the checkpoint this run resumed from
    (None for a fresh run): no shard's restored watermark is past it plus the reach of
    a window, so rows of windows closing by then are judged as rows. A batch with fewer
    than ``rows_per_window`` rows per distinct window sends rows instead of partials.
    """
    inputs = [
        ShardInput(
            batch.partition, batch.partitions, batch.max_us, batch.ended, batch.idle,
            batch.execution, batch.stopping,
        )
        for _ in range(SHARDS)
    ]  # fmt: skip
    records = spec.selected(batch.records)
    if records.num_rows:
        assigned = assign(spec, event_micros(records, time_field))
        # In this run a shard's watermark never passes a partition's own newest event
        # minus the lateness, so only rows closing at or before that may be late. A
        # partition back from idleness may be behind the watermark: all its rows are
        # judged. A restored watermark may be up to the reach of a window past the floor.
        prior = NEVER if batch.prior_max_us is None else batch.prior_max_us
        threshold = END_OF_TIME if batch.behind else prior - lateness_us
        if floor_us is not None:
            threshold = max(threshold, floor_us + reach_us(spec.window))
        maybe_late = closes_at(spec, assigned.starts, assigned.ends) <= threshold
        _route_on_time(spec, records, assigned.select(~maybe_late), rows_per_window, inputs)
        if maybe_late.any():
            late = with_windows(records, assigned.select(maybe_late))
            for shard, rows in _rows_by_shard(spec, late):
                inputs[shard].maybe_late = rows
    return _woken(inputs, told)


def _woken(inputs: list[ShardInput], told: PartitionClock | None) -> list[tuple[str, ShardInput]]:
    """The inputs of the shards a batch wakes: every one if its progress is news to
    ``told`` (or without one), else those it brings rows."""
    news = told is None or told.observe(inputs[0])
    return [(str(shard), shard_input) for shard, shard_input in enumerate(inputs)
            if news or _brings_rows(shard_input)]  # fmt: skip


def _brings_rows(shard_input: ShardInput) -> bool:
    """Whether ``shard_input`` holds partials or rows."""
    return bool(shard_input.partials) or any(
        rows is not None and rows.num_rows for rows in (shard_input.rows, shard_input.maybe_late)
    )


def _route_on_time(
    spec: TableSpec,
    records: pa.Table,
    on_time: Assigned,
    rows_per_window: float,
    inputs: list[ShardInput],
) -> None:
    """Rows of windows certainly open to their shards: as partials, or as rows if
    :func:`_sparse`."""
    if _sparse(spec, on_time, rows_per_window):
        for shard, rows in _rows_by_shard(spec, with_windows(records, on_time)):
            inputs[shard].rows = rows
    else:
        for partial in group(spec, records, on_time):
            inputs[shard_of(partial.key)].partials.append(partial)


def _sparse(spec: TableSpec, assigned: Assigned, rows_per_window: float) -> bool:
    """Whether rows travel as rows: always for sessions (a :class:`SessionShard` groups
    events itself), and when they spread over windows so thin that partials would cost
    about one per row."""
    if not len(assigned.rows):
        return False
    if isinstance(spec.window, Session):
        return True
    return len(np.unique(assigned.starts)) * rows_per_window > len(assigned.rows)


def _rows_by_shard(spec: TableSpec, rows: pa.Table) -> list[tuple[int, pa.Table]]:
    """``rows`` split by the shards of their keys, hashing each distinct key once."""
    codes, values = key_codes(spec, rows)
    if codes.shape[1] == 1:  # one key field: its dictionary holds each key once
        shards = np.array([shard_of((value,)) for value in values[0]])[codes[:, 0]]
    else:
        distinct, row_key = np.unique(codes, axis=0, return_inverse=True)
        shard_of_key = np.array(
            [shard_of(tuple(column[code] for column, code in zip(values, key, strict=True)))
             for key in distinct]
        )  # fmt: skip
        shards = shard_of_key[row_key.reshape(-1)]
    return [(int(shard), rows.filter(pa.array(shards == shard))) for shard in np.unique(shards)]


def new_shard(spec: TableSpec, lateness_us: int) -> Shard:
    """An empty shard for ``spec``'s kind of window."""
    if isinstance(spec.window, Session):
        return SessionShard(lateness_us)
    return WindowShard(lateness_us)


def windowed(
    step_id: str,
    batches: Stream[DecodedBatch],
    spec: TableSpec,
    time_field: str,
    lateness_us: int,
    ceiling: OpenWindowCeiling,
    floor_us: int | None = None,
) -> Windowed:
    """Add the steps computing ``spec`` from ``batches``, its shards' open windows counted
    against ``ceiling`` (``floor_us``: see :func:`route`); see the module docstring."""
    # One per process: all batches of a partition pass through the worker that reads it.
    told = PartitionClock(lateness_us)
    routed = op.flat_map(
        f"{step_id}_route",
        batches,
        lambda batch: route(spec, time_field, lateness_us, batch, floor_us, told=told),
    )

    def build(resumed: ShardSnapshot | None) -> ShardLogic:
        shard = new_shard(spec, lateness_us) if resumed is None else resumed.restored()
        return ShardLogic(spec, shard, lateness_us, ceiling)

    emitted = op.stateful(shards_step(step_id), routed, build)
    rows = op.flat_map_value(
        f"{step_id}_rows", emitted, lambda out: [] if out.closed is None else [out.closed]
    )
    late = op.flat_map_value(f"{step_id}_late", emitted, lambda out: late_rows(spec, out))
    return Windowed(rows, late, emitted)


def late_rows(spec: TableSpec, emitted: Emitted) -> list[pa.Table]:
    """Late rows of one shard step with the table they missed, the watermark and why:
    one table, or none if no row was late."""
    if emitted.late is None:
        return []
    count = emitted.late.num_rows
    watermark = pa.array([emitted.late_watermark] * count, pa.int64()).cast(UTC_MICROS)
    reason = f"its window of {spec.name} had closed (the watermark had passed it)"
    return [
        emitted.late.append_column("table", pa.array([spec.name] * count, pa.string()))
        .append_column("watermark", watermark)
        .append_column("reason", pa.array([reason] * count, pa.string()))
    ]
