"""Atomic Parquet files and a simple bytewax sink that writes them.

A file appears under its final name only when complete: it is written under
a hidden name (leading ``.``, which dataset readers skip), fsynced, then
renamed. The exactly-once, checkpointed sink builds on :func:`write_atomically`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sources.errors import EventlakeError

COMPRESSION = "zstd"


def write_atomically(table: pa.Table, path: Path, compression: str = COMPRESSION) -> None:
    """Write ``table`` to ``path`` so that readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temp, compression=compression)
    with temp.open("rb") as written:
        os.fsync(written.fileno())
    temp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types, or an error naming the mismatch."""
    if table.schema.names != schema.names:
        raise EventlakeError(
            f"rows with columns {table.schema.names} do not fit the table schema {schema.names}"
        )
    return table.cast(schema)


class _DirectoryWriter(StatelessSinkPartition[pa.Table]):
    def __init__(self, directory: Path, schema: pa.Schema, worker_index: int) -> None:
        self._directory = directory
        self._schema = schema
        self._prefix = f"part-w{worker_index}-{uuid.uuid4().hex[:12]}"
        self._sequence = 0

    def write_batch(self, items: list[pa.Table]) -> None:
        tables = [conform(table, self._schema) for table in items if table.num_rows]
        if not tables:
            return
        name = f"{self._prefix}-{self._sequence:06d}.parquet"
        write_atomically(pa.concat_tables(tables), self._directory / name)
        self._sequence += 1


class ParquetDirectorySink(DynamicSink[pa.Table]):
    """Writes each flushed batch of tables as one Parquet file in ``directory``.

    Every file has exactly ``schema``. Not fault tolerant: a crash and replay
    can write rows twice (the checkpointed sink replaces it).
    """

    def __init__(self, directory: Path, schema: pa.Schema) -> None:
        self._directory = directory
        self._schema = schema

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DirectoryWriter:
        """The writer of one worker; its file names never collide with another's."""
        return _DirectoryWriter(self._directory, self._schema, worker_index)


def count_rows(directory: Path) -> int:
    """Rows in the Parquet files of ``directory`` (0 if it does not exist)."""
    if not directory.exists():
        return 0
    return int(ds.dataset(directory, format="parquet").count_rows())
