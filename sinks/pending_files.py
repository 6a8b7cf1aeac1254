"""Files become visible only once the snapshot that wrote them is durable.

With checkpoints, a sink partition writes the files of one roll (one file
sequence number) under ``table/.pending/part-RUN-PPP-SSSSSSSS/<hive dirs>/`` at
``snapshot()`` (RUN: the run's id, :func:`sinks.recovery_store.run_id_of`), and
bytewax makes that snapshot durable afterwards. Once it is, the roll is
*published*: each file is renamed to the same place under the table, and the
roll's directory is removed. Who publishes:

- the partition itself, at a later snapshot, once the recovery store holds a
  committed snapshot past the roll (:class:`CommitWatch`);
- the command, when a run ends, for whatever the last epochs wrote
  (:func:`publish_committed`; compaction does the same before it starts, given
  the run's recovery directory);
- a resume, for the rolls its restored state covers; it deletes the others
  (:func:`settle_partition`).

Readers skip hidden directories, so they only ever see files that no resume
deletes or rewrites: Flink's in-progress → pending → finished. A file appears
one snapshot interval after its rows were written, or when the run ends.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sinks.faults import crash_point
from sinks.recovery_store import RecoveryStore

PENDING_DIR = ".pending"
_ROLL = re.compile(r"^part-(?P<run>[0-9a-f]+)-(?P<partition>\d+)-(?P<sequence>\d+)$")


def roll_name(run_id: str, partition: int, sequence: int) -> str:
    """The name shared by a roll's files (``-NNNN.parquet`` follows) and its pending
    directory: no two runs, partitions or rolls share one."""
    return f"part-{run_id}-{partition:03d}-{sequence:08d}"


def roll_directory(table_dir: Path, run_id: str, partition: int, sequence: int) -> Path:
    """Where the files of one roll wait until their snapshot is durable."""
    return table_dir / PENDING_DIR / roll_name(run_id, partition, sequence)


class CommitWatch:
    """Which rolls of one sink's partitions are durable, read from the recovery store.

    Shared by the sink's partitions in this process; each question costs one
    small read of the open recovery partitions.
    """

    def __init__(self, recovery_dir: Path, step_id: str) -> None:
        self._store = RecoveryStore(recovery_dir, in_flow=True)
        self._step_id = step_id

    def committed_sequence(self, partition: int) -> int:
        """Rolls of ``partition`` below this sequence number are in a committed snapshot."""
        key = str(partition)
        state = self._store.committed_states(self._step_id, key).get(key)
        return 0 if state is None else int(state.next_sequence)

    def close(self) -> None:
        """Release the recovery partitions (a later question opens them again)."""
        self._store.close()


def publish_roll(table_dir: Path, roll_dir: Path) -> None:
    """Move every file of ``roll_dir`` to its place under ``table_dir``, then remove it.

    Safe to repeat after a crash halfway, and to race with another process
    publishing the same roll.
    """
    for parent, _, names in os.walk(roll_dir):  # a roll removed meanwhile lists nothing
        for name in sorted(name for name in names if not name.startswith(".")):
            pending = Path(parent) / name
            target = table_dir / pending.relative_to(roll_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                pending.rename(target)
            except FileNotFoundError:  # published meanwhile by another process
                continue
            crash_point("after_publish")
    shutil.rmtree(roll_dir, ignore_errors=True)


def settle_partition(table_dir: Path, run_id: str, partition: int, next_sequence: int) -> None:
    """Before a partition of run ``run_id`` writes again: publish its rolls below
    ``next_sequence`` (the restored state covers them), delete the later ones, and the
    partition's leftover temporary files (a run without checkpoints leaves them under
    another run id each time; the table's claim says no other run writes now)."""
    for roll in pending_rolls(table_dir):
        if (roll.run_id, roll.partition) != (run_id, partition):
            continue
        if roll.sequence < next_sequence:
            publish_roll(table_dir, roll.directory)
        else:
            shutil.rmtree(roll.directory)
    leftover = re.compile(rf"^\.part-[0-9a-f]+-{partition:03d}-.*\.tmp$")  # of any run
    for parent, directories, names in os.walk(table_dir):  # tolerates rolls removed meanwhile
        directories[:] = [name for name in directories if name != PENDING_DIR]  # settled above
        for name in names:
            if leftover.match(name):
                (Path(parent) / name).unlink()


def publish_committed(table_dir: Path, recovery_dir: Path, step_id: str, run_id: str) -> int:
    """Publish every roll of run ``run_id`` whose snapshot ``recovery_dir`` holds as
    committed; how many."""
    watch = CommitWatch(recovery_dir, step_id)
    try:
        committed: dict[int, int] = {}
        published = 0
        for roll in pending_rolls(table_dir):
            if roll.run_id != run_id:
                continue
            if roll.partition not in committed:
                committed[roll.partition] = watch.committed_sequence(roll.partition)
            if roll.sequence < committed[roll.partition]:
                publish_roll(table_dir, roll.directory)
                published += 1
        return published
    finally:
        watch.close()


@dataclass(frozen=True)
class PendingRoll:
    """A roll waiting under ``table/.pending`` for its snapshot to be durable."""

    run_id: str
    partition: int
    sequence: int
    directory: Path


def pending_rolls(table_dir: Path) -> list[PendingRoll]:
    """Each roll waiting under ``table_dir``, in name order."""
    pending = table_dir / PENDING_DIR
    rolls = []
    for roll_dir in sorted(pending.iterdir()) if pending.is_dir() else []:
        match = _ROLL.match(roll_dir.name)
        if match is not None:
            rolls.append(PendingRoll(match["run"], int(match["partition"]),
                                     int(match["sequence"]), roll_dir))  # fmt: skip
    return rolls
