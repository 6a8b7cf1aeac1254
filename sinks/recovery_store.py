"""Read bytewax's recovery partitions (SQLite files under ``--recovery-dir``).

bytewax 0.21 keeps, in every ``part-N.sqlite3``: ``exs`` (one row per
execution: worker count and resume epoch), ``fronts`` (each worker's
frontier) and ``snaps`` (each step's pickled state per key and epoch).
"""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def resume_epoch(directory: Path) -> int | None:
    """The epoch a run on ``directory`` resumes from, or None if no run ever started.

    bytewax resumes at the slowest worker's frontier of the latest execution;
    a worker that recorded no frontier yet counts with the execution's own
    resume epoch.
    """
    executions: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for db in _partitions(directory):
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


def committed_states(directory: Path, step_id: str) -> dict[str, Any]:
    """The state per key of step ``step_id`` that a resume would restore
    (empty when nothing was committed); keys whose state was discarded are absent."""
    epoch = resume_epoch(directory)
    if epoch is None:
        return {}
    latest: dict[str, tuple[int, bytes | None]] = {}
    for db in _partitions(directory):
        rows = db.execute(
            "SELECT state_key, snap_epoch, ser_change FROM snaps "
            "WHERE step_id = ? AND snap_epoch < ?",
            (step_id, epoch),
        )
        for key, snap_epoch, change in rows:
            if key not in latest or snap_epoch > latest[key][0]:
                latest[key] = (snap_epoch, change)
    return {key: pickle.loads(change) for key, (_, change) in latest.items() if change}


def _partitions(directory: Path) -> Iterator[sqlite3.Connection]:
    for path in sorted(directory.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(path)) as db:
            yield db
