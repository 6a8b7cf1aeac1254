"""Committed offsets for Kafka's lag tools, read from the run's checkpoints."""

from __future__ import annotations

from pathlib import Path

from common.metrics import RunFigures
from flows.runtime.settings import FlowSettings
from sinks.recovery_store import RecoveryStore
from sources.offset_commits import GroupCommits, commit_with_own_consumer


def consumer_group(settings: FlowSettings, dataflow: str) -> str:
    """The group a run commits to: ``--group``, else ``eventlake-<flow>-<topic>``."""
    return settings.group or f"eventlake-{dataflow}-{settings.topic}"


class DurableOffsets:
    """The source partitions' next offsets in the last durable checkpoint, read from the
    recovery store (through a helper process, as a flow must)."""

    def __init__(self, recovery_dir: Path, step_id: str) -> None:
        self._store = RecoveryStore(recovery_dir, in_flow=True)
        self._step_id = step_id

    def __call__(self, partition: int) -> int | None:
        """One partition's offset, or None before its first durable checkpoint."""
        key = str(partition)
        state = self._store.committed_states(self._step_id, key).get(key)
        return None if state is None else int(state.next_offset)

    def every_partition(self) -> dict[int, int]:
        """The offset of every partition in the checkpoint."""
        states = self._store.committed_states(self._step_id)
        return {int(key): int(state.next_offset) for key, state in states.items()}

    def close(self) -> None:
        """Release the recovery store (a later call opens it again)."""
        self._store.close()


def group_commits(settings: FlowSettings, dataflow: str, step_id: str) -> GroupCommits | None:
    """What a run's readers commit after each snapshot, and where; None without
    checkpoints or with ``--no-commit``."""
    checkpointing = settings.checkpointing
    if not settings.commit_offsets or checkpointing is None:
        return None
    group = consumer_group(settings, dataflow)
    return GroupCommits(group, DurableOffsets(checkpointing.directory, step_id))


def commit_after_run(
    settings: FlowSettings, dataflow: str, step_id: str, figures: RunFigures, stopped: bool
) -> None:
    """After a run that did not fail: with checkpoints, commit the offsets of the last
    durable one (its readers committed those of the one before); without, once a bounded
    run has written every table, where this process's readers stopped (``figures``). A
    run without checkpoints that was ``stopped`` lost its open windows: it commits nothing."""
    if not settings.commit_offsets:
        return
    checkpointing = settings.checkpointing
    if checkpointing is not None:
        offsets = DurableOffsets(checkpointing.directory, step_id)
        try:
            read_to = offsets.every_partition()
        finally:
            offsets.close()
    elif settings.bounded and not stopped:
        read_to = {part: read.position for part, read in figures.partitions.items()}
    else:
        return
    group = consumer_group(settings, dataflow)
    commit_with_own_consumer(settings.target, group, settings.topic, read_to)
