"""Merge a table's small files into larger ones without readers ever noticing.

Per Hive directory (e.g. ``date=…/hour=…``), committed files smaller than the
target are packed into groups of about the target size and each group is
rewritten as one ``compacted-*.parquet`` file. The new directory is built
next to the old one under a hidden name (the untouched files hard-linked into
it), then swapped with it in one ``renameat2(RENAME_EXCHANGE)``: a reader
listing the directory sees the old files or the new ones, never both, never
neither. A reader that listed the old files just before the swap and opens
one afterwards gets FileNotFoundError and must retry, as with any file-based
table. An interrupted compaction leaves only hidden directories, removed by
the next one.

Every visible file is committed (:mod:`sinks.pending_files`), so compaction
never turns rows a replay will write again into duplicates. Given the recovery
directory of the run that wrote the table, it first publishes the rolls a crashed
run left pending whose snapshot is committed; the others stay pending, for the
resume to delete and write again. Without it, pending rolls are left alone: the
recovery directory a file under the table names is never read (checkpoints are
pickles, so only a directory the user names is trusted). Restoring
recovery partitions from a backup older than a compaction is not supported.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import ConfigError, EventlakeError
from common.progress import Progress
from sinks.parquet_files import visible_files, write_atomically
from sinks.pending_files import pending_rolls
from sinks.table_lock import hold_for_compaction
from sinks.table_sink import SINK_MARKER, RollingPolicy, publish_committed_rolls, read_sink_marker

DEFAULT_TARGET_SIZE = RollingPolicy.max_bytes
"""Compacted files are about as large as the largest files a run cuts."""
_STAGING_SUFFIX = ".compacting"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class CompactionReport:
    """What one compaction did."""

    directories: int
    """Hive directories rewritten."""
    files_merged: int
    """Small files replaced."""
    files_written: int
    """Compacted files that replaced them."""
    rows: int
    """Rows moved into compacted files (the table's rows are unchanged)."""
    published: int
    """Rolls a crashed run left pending, published because their snapshot is committed."""
    uncommitted: int
    """Rolls left pending: their snapshot is not committed (a resume writes them again),
    or no recovery directory was given to tell."""


def compact_table(
    table_dir: Path,
    target_size: int = DEFAULT_TARGET_SIZE,
    progress: Progress | None = None,
    recovery_dir: Path | None = None,
) -> CompactionReport:
    """Compact every Hive directory of ``table_dir``; the multiset of rows stays the same.
    With ``recovery_dir`` (the writing run's), first publish its committed pending rolls.

    Raises ConfigError if ``table_dir`` is not a table directory a flow wrote (the
    output root, a ``date=`` folder…) or another run's recovery directory is given, and
    TableBusyError if a flow is writing it.
    """
    _require_table(table_dir)
    with hold_for_compaction(table_dir):
        published = 0 if recovery_dir is None else publish_committed_rolls(table_dir, recovery_dir)
        files = visible_files(table_dir)  # leftovers below are hidden: not among them
        if any(path.parent == table_dir for path in files):
            raise ConfigError(
                f"{table_dir} keeps its files in the table directory itself (--partition-by "
                "none), which compaction cannot swap atomically for readers; write tables "
                "you want to compact with --partition-by day or hour"
            )
        for leftover in table_dir.rglob(f".*{_STAGING_SUFFIX}"):
            shutil.rmtree(leftover)
        plans = _plan(files, target_size)
        groups = [group for directory_groups in plans.values() for group in directory_groups]
        if progress is not None:
            progress.expect(sum(len(group) for group in groups))
        rows = sum(_rewrite(directory, plan, progress) for directory, plan in plans.items())
    return CompactionReport(
        directories=len(plans),
        files_merged=sum(len(group) for group in groups),
        files_written=len(groups),
        rows=rows,
        published=published,
        uncommitted=len(pending_rolls(table_dir)),
    )


def _require_table(table_dir: Path) -> None:
    """ConfigError naming the directory to pass unless a flow's sink wrote ``table_dir``."""
    if table_dir.is_dir() and read_sink_marker(table_dir) is not None:
        return
    owner = next((parent for parent in table_dir.parents if (parent / SINK_MARKER).exists()), None)
    tables = sorted(p for p in table_dir.glob(f"*/{SINK_MARKER}")) if table_dir.is_dir() else []
    if owner is not None:
        hint = f"pass the table directory {owner}"
    elif tables:
        hint = f"pass one of its tables, e.g. {tables[0].parent}"
    else:
        hint = "pass OUT/<table>, e.g. output/alerts"
    raise ConfigError(
        f"{table_dir} is not a table directory of a flow's output (no {SINK_MARKER}); {hint}"
    )


def _plan(files: list[Path], target_size: int) -> dict[Path, list[list[Path]]]:
    """Per directory with something to merge, its groups of files to merge."""
    plans = {}
    for directory in sorted({path.parent for path in files}):
        groups = _pack([path for path in files if path.parent == directory], target_size)
        if groups:
            plans[directory] = groups
    return plans


def _pack(files: list[Path], target_size: int) -> list[list[Path]]:
    """Groups of at least two files below ``target_size``, each up to about that size."""
    groups: list[list[Path]] = []
    current: list[Path] = []
    current_size = 0
    for path in sorted(files):
        size = path.stat().st_size
        if size >= target_size:
            continue
        if current and current_size + size > target_size:
            groups.append(current)
            current, current_size = [], 0
        current.append(path)
        current_size += size
    groups.append(current)
    return [group for group in groups if len(group) > 1]


def _rewrite(directory: Path, groups: list[list[Path]], progress: Progress | None) -> int:
    """Swap ``directory`` for a copy whose ``groups`` are merged; rows moved."""
    staging = directory.with_name(f".{directory.name}{_STAGING_SUFFIX}")
    staging.mkdir()
    merged = {path for group in groups for path in group}
    for path in directory.glob("*.parquet"):
        if path not in merged:
            os.link(path, staging / path.name)
    rows = 0
    batch = uuid.uuid4().hex[:12]
    for number, group in enumerate(groups):
        table = pa.concat_tables(pq.read_table(path) for path in group)
        name = f"compacted-{batch}-{number:04d}.parquet"
        write_atomically(
            table, staging / name, _compression(group[0]), RollingPolicy.row_group_rows
        )
        rows += table.num_rows
    _exchange(staging, directory)
    shutil.rmtree(staging)
    if progress is not None:
        progress.advance(len(merged))
    return rows


def _compression(path: Path) -> str:
    """The codec ``path`` was written with, so compaction keeps the table's choice."""
    metadata = pq.ParquetFile(path).metadata
    if metadata.num_row_groups == 0:
        return RollingPolicy.compression
    codec = metadata.row_group(0).column(0).compression.lower()
    return "none" if codec == "uncompressed" else codec


def _exchange(first: Path, second: Path) -> None:
    """Swap two directories in one step (Linux ``renameat2`` with RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    done = libc.renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done != 0:
        error = ctypes.get_errno()
        raise EventlakeError(
            f"could not swap {first} with {second}: {os.strerror(error)}; compaction needs a "
            "local Linux file system with renameat2 RENAME_EXCHANGE (ext4, xfs, btrfs, tmpfs)"
        )
