"""Checkpoints: bytewax recovery partitions under ``--recovery-dir``.

A run with a recovery directory snapshots source offsets, open windows,
watermarks, alert baselines and sink buffers every ``--snapshot-interval``;
after a crash the same command resumes from the last complete snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bytewax.recovery import RecoveryConfig, init_db_dir

from common.errors import ConfigError
from flows.engine.routing import shards_state
from flows.runtime.runner import Processes
from sinks.parquet_files import unwritable
from sinks.recovery_store import CREATE_LOCK, committed_states, resume_epoch
from sinks.table_lock import lock_now, locked

_OWNER_LOCK = ".owner-{}.lock"
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
def owned(directory: Path, processes: Processes) -> Iterator[None]:
    """This process's exclusive lock on ``directory`` while inside; it dies with the
    process (no stale lock after a SIGKILL).

    ConfigError at once, naming the holder's pid and host, if another run holds
    this process id's lock, or if a run of another process count holds any.
    """
    _made(directory)
    lock_path = directory / _OWNER_LOCK.format(processes.process_id)
    with lock_path.open("a+") as lock:
        if not _lock_soon(lock):
            raise ConfigError(
                f"--recovery-dir {directory} is in use by {_holder(lock_path)}; wait for that "
                "run to end or stop it, or pass another --recovery-dir"
            )
        lock.truncate(0)
        lock.write(json.dumps(owner_record(processes)))
        lock.flush()
        _refuse_other_process_counts(directory, lock_path, _process_count(processes))
        yield


def _refuse_other_process_counts(directory: Path, mine: Path, count: int) -> None:
    for other in sorted(directory.glob(_OWNER_LOCK.format("*"))):
        if other == mine or not _held(other):
            continue
        holder = _settled_owner(other, count)
        if holder.get("processes") not in (None, count):  # None: being written right now
            raise ConfigError(
                f"--recovery-dir {directory} is in use by a run of {holder.get('processes')} "
                f"processes ({_holder(other)}); this run of {count} cannot share it: stop that "
                "run first"
            )


def require_recovery_dir(directory: Path) -> None:
    """ConfigError naming the fix if ``directory`` is a file or cannot take a file (no
    permission, no space); creates nothing."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--recovery-dir {directory} is a file; pass a directory")
    problem = unwritable(directory)
    if problem is not None:
        raise ConfigError(
            f"cannot write checkpoints in --recovery-dir {directory}: {problem}; free space or "
            "fix its permissions, or pass another --recovery-dir"
        )


def _made(directory: Path) -> None:
    require_recovery_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)


def _lock_soon(lock: IO[str], tries: int = 20) -> bool:
    """The exclusive lock, retried briefly: another process of the run may be looking
    at it this very moment (see :func:`_held`)."""
    for _ in range(tries):
        if lock_now(lock, fcntl.LOCK_EX):
            return True
        time.sleep(0.025)
    return False


def holders(directory: Path) -> list[dict[str, Any]]:
    """The processes running on ``directory`` now: pid, host, process count, since."""
    locks = sorted(directory.glob(_OWNER_LOCK.format("*")))
    return [_read_owner(lock) for lock in locks if _held(lock)]


def last_written(directory: Path) -> datetime | None:
    """When the recovery partitions were last written (a checkpoint); None before any."""
    times = [path.stat().st_mtime for path in directory.glob("part-*.sqlite3*")]
    return datetime.fromtimestamp(max(times), UTC) if times else None


def _held(lock_path: Path) -> bool:
    with lock_path.open("a") as lock:
        return not lock_now(lock, fcntl.LOCK_SH)


def _process_count(processes: Processes) -> int:
    return max(len(processes.addresses), 1)


def owner_record(processes: Processes) -> dict[str, object]:
    """Who this process is, for a message another run gets: pid, host, process count
    of its run, since when."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "processes": _process_count(processes),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _settled_owner(lock_path: Path, count: int, wait_s: float = 1.0) -> dict[str, Any]:
    """The holder's record; one naming another process count is read again for up to
    ``wait_s``, since a process of this very run may have just taken a lock whose file
    still holds the record of a dead run."""
    deadline = time.monotonic() + wait_s
    holder = _read_owner(lock_path)
    while holder.get("processes") not in (None, count) and time.monotonic() < deadline:
        time.sleep(0.05)
        holder = _read_owner(lock_path)
    return holder


def _read_owner(lock_path: Path) -> dict[str, Any]:
    try:
        owner: dict[str, Any] = json.loads(lock_path.read_text())
    except (OSError, ValueError):  # being written this very moment
        return {}
    return owner


def _holder(lock_path: Path) -> str:
    owner = _read_owner(lock_path)
    return (
        f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} "
        f"(since {owner.get('since', '?')})"
    )


@dataclass(frozen=True)
class ResumePoint:
    """What the Kafka source's checkpoint says about the runs before this one."""

    newest_event_us: int | None = None
    """The newest event time any partition had read; None for a fresh run."""
    execution: int = 1
    """This run's number: one more than any run before it."""


def resume_point(directory: Path, source_step: str) -> ResumePoint:
    """The :class:`ResumePoint` of a run on ``directory`` whose source is ``source_step``."""
    positions = list(committed_states(directory, source_step).values())
    newest = max((p.max_us for p in positions if p.max_us is not None), default=None)
    return ResumePoint(newest, max((p.execution for p in positions), default=0) + 1)


def open_windows(directory: Path, flow: str, tables: list[str]) -> dict[str, int]:
    """Windows (sessions) each windowed table of ``flow`` keeps open in the checkpoint a
    resume would restore (rows a shard holds but has not grouped yet not counted: a run
    that ended groups them all)."""
    counts = {}
    for table in tables:
        shards = committed_states(directory, shards_state(flow, table))
        counts[table] = sum(shard.open_windows() for shard in shards.values())
    return counts


def prepare(checkpointing: Checkpointing) -> tuple[RecoveryConfig, int | None]:
    """The recovery config (creating the partitions on first use) and the epoch the
    run resumes from, None when it starts fresh."""
    directory = checkpointing.directory
    _made(directory)
    with locked(directory / CREATE_LOCK, fcntl.LOCK_EX):  # the processes of a run start together
        if not list(directory.glob("part-*.sqlite3")):
            init_db_dir(directory, checkpointing.partitions)  # type: ignore[no-untyped-call]
    backup = timedelta(seconds=checkpointing.backup_interval_s)
    config = RecoveryConfig(directory, backup_interval=backup)  # type: ignore[no-untyped-call]
    return config, resume_epoch(directory)
