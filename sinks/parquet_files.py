"""Atomic Parquet files, fixed schemas, and counting what was written.

A file appears under its final name only when complete: it is written under
a hidden name (leading ``.``, which dataset readers skip), fsynced, then
renamed. The exactly-once sink (:mod:`sinks.table_sink`) builds on
:func:`write_atomically`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from common.errors import ConfigError, EventlakeError, OutputError
from sinks.faults import crash_point

COMPRESSION = "zstd"


def write_atomically(
    table: pa.Table,
    path: Path,
    compression: str = COMPRESSION,
    row_group_rows: int | None = None,
) -> None:
    """Write ``table`` to ``path`` so that readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temp, compression=compression, row_group_size=row_group_rows)
    with temp.open("rb") as written:
        os.fsync(written.fileno())
    crash_point("before_rename")
    temp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    crash_point("after_rename")


def require_writable(table_dir: Path) -> None:
    """Create ``table_dir`` if needed and write a byte into it, so that a run finds out
    before it reads anything: ConfigError naming the directory and the reason if it
    cannot (a file in its place, no permission, no space)."""
    if table_dir.exists() and not table_dir.is_dir():
        raise ConfigError(
            f"{table_dir} is a file, where table {table_dir.name} goes; remove it or pass "
            "another --out"
        )
    try:
        table_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=table_dir) as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise ConfigError(
            f"cannot write table {table_dir.name} in {table_dir}: {err.strerror or err}; "
            "free space or fix its permissions, or pass another --out"
        ) from None


@contextlib.contextmanager
def writing(table_dir: Path) -> Iterator[None]:
    """While inside, an OSError becomes an OutputError: one line naming the table, what
    failed and what to do (a run's output can fill a disk or lose permissions)."""
    try:
        yield
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise OutputError(
            f"cannot write table {table_dir.name}: {err.strerror or err}{where}; free space or "
            "fix permissions, then run the same command again (with --recovery-dir it "
            "resumes from its last checkpoint)"
        ) from err


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types, or an error naming the mismatch."""
    if table.schema.names != schema.names:
        raise EventlakeError(
            f"rows with columns {table.schema.names} do not fit the table schema {schema.names}"
        )
    return table.cast(schema)


def count_rows(directory: Path) -> int:
    """Rows in the Parquet files of ``directory`` (0 if it does not exist)."""
    if not directory.exists():
        return 0
    return int(ds.dataset(directory, format="parquet").count_rows())


def column_sum(directory: Path, column: str) -> int:
    """The sum of an integer ``column`` over the Parquet files of ``directory`` (0 if
    it does not exist or has no rows)."""
    dataset = ds.dataset(directory, format="parquet") if directory.exists() else None
    if dataset is None or not dataset.files:
        return 0
    return int(pc.sum(dataset.to_table(columns=[column])[column]).as_py() or 0)


def visible_files(table_dir: Path) -> list[Path]:
    """The Parquet files dataset readers see (none under hidden names); tolerates
    hidden directories that writers remove meanwhile."""
    files = []
    for parent, directories, names in os.walk(table_dir):
        directories[:] = [name for name in directories if name[0] not in "._"]
        files += [Path(parent) / name for name in names
                  if name.endswith(".parquet") and name[0] not in "._"]  # fmt: skip
    return files
