"""What the notebooks call: find the output, load tables, roll sketches up.

Percentiles cannot be averaged: the p99 of an hour is not the mean of its
minutes' p99s. The stored KLL sketches (``sketch_*`` columns) merge into the
sketch of the whole hour, and HLL sketches (``hll_*``) into the distinct count
of any union of windows, overlapping ones included.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasketches as sketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from common.units import MICROS_PER_SECOND, percent_label

OUT_ENV = "EVENTLAKE_OUT"
DEFAULT_OUT = Path("demo-output")


def output_dir() -> Path:
    """The output directory to explore: ``$EVENTLAKE_OUT``, else ``demo-output``
    (what ``make demo`` writes), looked up from the repository root too."""
    configured = os.environ.get(OUT_ENV)
    if configured:
        return Path(configured)
    for base in (Path.cwd(), Path.cwd().parent):
        if (base / DEFAULT_OUT).is_dir():
            return base / DEFAULT_OUT
    return DEFAULT_OUT


def load_table(name: str, out: Path | None = None) -> pa.Table:
    """Every row of table ``name`` under ``out`` (default :func:`output_dir`), without
    the ``date``/``hour`` path columns; an empty table if it has no files yet."""
    directory = (out or output_dir()) / name
    table = ds.dataset(directory, partitioning="hive").to_table()
    return table.drop_columns([c for c in ("date", "hour") if c in table.column_names])


def rollup_quantiles(
    windows: pa.Table,
    keys: Sequence[str],
    sketch_column: str,
    size_s: float,
    quantiles: Sequence[float],
) -> pa.Table:
    """Per key and coarser window of ``size_s``: ``count`` and ``pNN`` from the merged
    KLL sketches of the finer windows inside it."""
    merged: dict[tuple[Any, ...], Any] = {}
    for key, sketch_bytes in _by_coarse_window(windows, keys, sketch_column, size_s):
        sketch = sketches.kll_doubles_sketch.deserialize(sketch_bytes)
        if key in merged:
            merged[key].merge(sketch)
        else:
            merged[key] = sketch
    rows = []
    for key, sketch in sorted(merged.items(), key=_null_last):
        row = dict(zip([*keys, "window_start"], key, strict=True))
        row["count"] = sketch.n
        row |= {percent_label(q): sketch.get_quantile(q) for q in quantiles}
        rows.append(row)
    return _with_times(pa.Table.from_pylist(rows))


def rollup_distinct(
    windows: pa.Table, keys: Sequence[str], hll_column: str, size_s: float
) -> pa.Table:
    """Per key and coarser window of ``size_s``: ``distinct`` from the union of the HLL
    sketches of the windows starting inside it (overlapping windows are fine)."""
    unions: dict[tuple[Any, ...], Any] = {}
    for key, sketch_bytes in _by_coarse_window(windows, keys, hll_column, size_s):
        sketch = sketches.hll_sketch.deserialize(sketch_bytes)
        union = unions.setdefault(key, sketches.hll_union(sketch.lg_config_k))
        union.update(sketch)
    rows = [
        {**dict(zip([*keys, "window_start"], key, strict=True)), "distinct": u.get_estimate()}
        for key, u in sorted(unions.items(), key=_null_last)
    ]
    return _with_times(pa.Table.from_pylist(rows))


def averaged_percentiles(
    windows: pa.Table, keys: Sequence[str], columns: Sequence[str], size_s: float
) -> pa.Table:
    """The wrong roll-up, for comparison: the mean of the finer windows' percentiles."""
    groups: dict[tuple[Any, ...], list[list[float]]] = defaultdict(list)
    values = [windows[c].to_pylist() for c in columns]
    for index, key in enumerate(_coarse_keys(windows, keys, size_s)):
        groups[key].append([v[index] for v in values])
    rows = [
        {
            **dict(zip([*keys, "window_start"], key, strict=True)),
            **dict(zip(columns, np.mean(np.array(members), axis=0).tolist(), strict=True)),
        }
        for key, members in sorted(groups.items(), key=_null_last)
    ]
    return _with_times(pa.Table.from_pylist(rows))


def _by_coarse_window(
    windows: pa.Table, keys: Sequence[str], column: str, size_s: float
) -> list[tuple[tuple[Any, ...], bytes]]:
    blobs = windows[column].to_pylist()
    return [
        (key, blob)
        for key, blob in zip(_coarse_keys(windows, keys, size_s), blobs, strict=True)
        if blob is not None
    ]


def _coarse_keys(windows: pa.Table, keys: Sequence[str], size_s: float) -> list[tuple[Any, ...]]:
    """Per row: its key values and the start of the ``size_s`` window it falls in."""
    micros = pc.cast(windows["window_start"], pa.int64()).to_numpy()
    size = round(size_s * MICROS_PER_SECOND)
    starts = (micros - micros % size).tolist()
    key_values = [windows[k].to_pylist() for k in keys]
    return [(*(kv[index] for kv in key_values), start) for index, start in enumerate(starts)]


def _with_times(table: pa.Table) -> pa.Table:
    if "window_start" not in table.column_names:
        return table
    index = table.schema.get_field_index("window_start")
    stamps = pc.cast(table["window_start"], pa.timestamp("us", tz="UTC"))
    return table.set_column(index, "window_start", stamps)


def _null_last(item: tuple[tuple[Any, ...], Any]) -> list[tuple[bool, Any]]:
    """Sort by group key; a null key (allowed by ``eventlake aggregate``) sorts last."""
    return [(value is None, 0 if value is None else value) for value in item[0]]
