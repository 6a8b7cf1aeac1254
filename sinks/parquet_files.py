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
    """ConfigError naming the directory and the reason if ``table_dir`` cannot be written
    (a file in its place, no permission, no space), or if a directory in it is a
    symbolic link (writes and deletes would land outside the table); creates nothing, so
    a run can find out before it reads anything."""
    if table_dir.exists() and not table_dir.is_dir():
        raise ConfigError(
            f"{table_dir} is a file, where table {table_dir.name} goes; remove it or pass "
            "another --out"
        )
    link = next(symbolic_links(table_dir), None)
    if link is not None:
        raise ConfigError(
            f"{link} is a symbolic link to {link.readlink()}: a table's directories must be "
            "its own, or its files would be written and deleted elsewhere; replace the link by "
            "a directory, or pass --out on the disk it points to"
        )
    problem = unwritable(table_dir)
    if problem is not None:
        raise ConfigError(
            f"cannot write table {table_dir.name} in {table_dir}: {problem}; free space or "
            "fix its permissions, or pass another --out"
        )


def unwritable(directory: Path) -> str | None:
    """Why ``directory`` cannot take a file; None if it can. A byte is written and fsynced
    into it, or into the nearest directory above that exists (where it would be made),
    and removed: nothing is left behind."""
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        return str(err.strerror or err)
    return None


def symbolic_links(table_dir: Path) -> Iterator[Path]:
    """The table directory and every directory under it that is a symbolic link."""
    if table_dir.is_symlink():
        yield table_dir
    for parent, directories, _ in os.walk(table_dir):  # never follows links
        yield from (Path(parent) / name for name in directories
                    if (Path(parent) / name).is_symlink())  # fmt: skip


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
