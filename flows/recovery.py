"""Checkpoints: bytewax recovery partitions under ``--recovery-dir``.

A run with a recovery directory snapshots source offsets, open windows,
watermarks, alert baselines and sink buffers every ``--snapshot-interval``;
after a crash the same command resumes from the last complete snapshot.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir

from sources.errors import ConfigError

DEFAULT_RECOVERY_PARTITIONS = 16
"""Fixed at creation; enough for 16 workers in all (each worker needs one)."""


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run checkpoints."""

    directory: Path
    snapshot_interval_s: float = 10.0
    backup_interval_s: float = 30.0
    partitions: int = DEFAULT_RECOVERY_PARTITIONS


def resume_epoch(directory: Path) -> int | None:
    """The epoch a run on ``directory`` resumes from, or None if no run ever started.

    bytewax resumes at the slowest worker's frontier of the latest execution;
    a worker that recorded no frontier yet counts with the execution's own
    resume epoch.
    """
    executions: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for path in sorted(directory.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(path)) as db:
            try:
                executions += db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs")
                fronts += db.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts")
            except sqlite3.OperationalError:  # a partition still being created
                continue
    if not executions:
        return None
    latest, workers, started_at = max(executions)
    frontiers = {worker: frontier for ex, worker, frontier in fronts if ex == latest}
    return min(frontiers.get(worker, started_at) for worker in range(workers))


def prepare(checkpointing: Checkpointing) -> tuple[RecoveryConfig, int | None]:
    """The recovery config (creating the partitions on first use) and the epoch the
    run resumes from, None when it starts fresh."""
    directory = checkpointing.directory
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--recovery-dir {directory} is a file; pass a directory")
    if not list(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, checkpointing.partitions)  # type: ignore[no-untyped-call]
    backup = timedelta(seconds=checkpointing.backup_interval_s)
    config = RecoveryConfig(directory, backup_interval=backup)  # type: ignore[no-untyped-call]
    return config, resume_epoch(directory)
