"""Summaries of an output directory: what ``eventlake inspect`` prints.

Works on any directory the sink writes, also while a flow writes it: a file
that vanishes between listing and reading (a resume or compaction replaced
it) makes the summary start over, a few times at most.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from common.errors import ConfigError, EventlakeError
from sinks.directories import READ_AT

TIME_COLUMNS = ("window_start", READ_AT.name)
"""The column whose range is shown: window start, or when a dead letter was read."""
ATTEMPTS = 5
T = TypeVar("T")


@dataclass(frozen=True)
class TableSummary:
    """One table of an output directory."""

    table: str
    files: int
    rows: int
    bytes: int
    partitions: int
    """Hive directories (``date=…``, ``date=…/hour=…``, or the table's own) holding files."""
    time_column: str | None
    first: str | None
    """Earliest value of :attr:`time_column` (ISO-8601), None if empty."""
    last: str | None
    schema: list[str]
    """``name: type`` per column."""

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return asdict(self)


def summarize(out: Path) -> list[TableSummary]:
    """A summary per table directory of ``out``, by name; ConfigError if ``out`` holds none."""
    children = sorted(out.iterdir()) if out.is_dir() else []
    tables = [p for p in children if p.is_dir() and not p.name.startswith((".", "_"))]
    if not tables:
        raise ConfigError(f"{out} holds no output tables; pass a run's --out, e.g. demo-output")
    return [_retrying(_summary, table) for table in tables]


def head(out: Path, table: str, rows: int) -> pa.Table:
    """The first ``rows`` rows of ``table`` in ``window_start`` order (file order if none)."""
    directory = out / table
    if not directory.is_dir():
        raise ConfigError(f"no table {table!r} under {out}; see `eventlake inspect {out}`")
    data = _retrying(lambda d: _dataset(d).to_table(), directory)
    for column in TIME_COLUMNS:
        if column in data.column_names:
            data = data.sort_by(column)
            break
    return data.slice(0, rows)


def _summary(directory: Path) -> TableSummary:
    dataset = _dataset(directory)
    files = sorted(dataset.files)
    time_column = next((c for c in TIME_COLUMNS if c in dataset.schema.names), None)
    first = last = None
    if time_column is not None and files:
        bounds = pc.min_max(dataset.to_table(columns=[time_column])[time_column]).as_py()
        first, last = (None if v is None else v.isoformat() for v in (bounds["min"], bounds["max"]))
    return TableSummary(
        table=directory.name,
        files=len(files),
        rows=dataset.count_rows(),
        bytes=sum(Path(f).stat().st_size for f in files),
        partitions=len({str(Path(f).parent) for f in files}),
        time_column=time_column,
        first=first,
        last=last,
        schema=[f"{field.name}: {field.type}" for field in dataset.schema],
    )


def _dataset(directory: Path) -> ds.Dataset:
    return ds.dataset(directory, partitioning="hive")


def _retrying(read: Callable[[Path], T], directory: Path) -> T:
    """``read(directory)``, listing the files again when one vanished meanwhile."""
    for _ in range(ATTEMPTS - 1):
        with contextlib.suppress(FileNotFoundError):
            return read(directory)
    try:
        return read(directory)
    except FileNotFoundError as err:
        raise EventlakeError(f"{directory} kept changing while being read: {err}") from err
