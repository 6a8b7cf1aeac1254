"""Checkpoints: bytewax recovery partitions under ``--recovery-dir``.

A run with a recovery directory snapshots source offsets, open windows,
watermarks, alert baselines and sink buffers every ``--snapshot-interval``;
after a crash the same command resumes from the last complete snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir

from sinks.recovery_store import resume_epoch
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


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare(checkpointing: Checkpointing) -> tuple[RecoveryConfig, int | None]:
    """The recovery config (creating the partitions on first use) and the epoch the
    run resumes from, None when it starts fresh."""
    directory = checkpointing.directory
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--recovery-dir {directory} is a file; pass a directory")
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory / ".create.lock"):  # the processes of a run start together
        if not list(directory.glob("part-*.sqlite3")):
            init_db_dir(directory, checkpointing.partitions)  # type: ignore[no-untyped-call]
    backup = timedelta(seconds=checkpointing.backup_interval_s)
    config = RecoveryConfig(directory, backup_interval=backup)  # type: ignore[no-untyped-call]
    return config, resume_epoch(directory)
