"""A run's output: checked before Kafka is asked anything, claimed for the run's whole
life, refused if an earlier run wrote it, and its last rolls published at the end."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from common.errors import ConfigError
from flows.runtime.checkpoints import owner_record, require_recovery_dir
from flows.runtime.settings import FlowSettings
from sinks.parquet_files import require_writable, visible_files
from sinks.pending_files import pending_rolls
from sinks.recovery_store import new_run_id, run_id_of
from sinks.table_lock import claim_table, hold_for_writing
from sinks.table_sink import publish_committed_rolls


def require_output(tables: Sequence[str], settings: FlowSettings) -> None:
    """ConfigError naming the fix unless every table directory of ``tables`` and the
    recovery directory can be written (and hold no symbolic link): checked before the
    run connects to Kafka."""
    if settings.checkpointing is not None:
        require_recovery_dir(settings.checkpointing.directory)
    for table in tables:
        require_writable(settings.out / table)


def run_id(settings: FlowSettings) -> str:
    """The id every process of this run has, and no other run: made of the recovery
    directory's id and its path (a resume continues the same run; a copy of the directory
    is another run), else of the cluster's addresses (every process of a multi-process run
    is given the same list), else a new one."""
    if settings.checkpointing is not None:
        directory = settings.checkpointing.directory
        return _digest(f"{run_id_of(directory)} {directory.resolve()}")
    addresses = settings.processes.addresses
    if len(addresses) > 1:
        return _digest(" ".join(addresses))
    return new_run_id()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def claimed(tables: Sequence[str], settings: FlowSettings) -> Iterator[None]:
    """Every table of ``tables`` claimed for this run while inside
    (:func:`~sinks.table_lock.claim_table`): ConfigError at once, naming the holder, if
    another run is writing one of them."""
    checkpoints = settings.checkpointing
    holder = {
        **owner_record(settings.processes),
        "recovery_dir": None if checkpoints is None else str(checkpoints.directory.resolve()),
    }
    run = run_id(settings)
    with contextlib.ExitStack() as claims:
        for table in tables:
            claims.enter_context(contextlib.closing(claim_table(settings.out / table, run, holder)))
        yield


def refuse_earlier_output(out: Path, tables: Sequence[str]) -> None:
    """ConfigError if ``out`` already holds one of ``tables``: a rerun would add every row again."""
    for table in tables:
        files = visible_files(out / table) + [roll.directory for roll in pending_rolls(out / table)]
        if files:
            raise ConfigError(
                f"{out / table} already holds {len(files)} Parquet file(s) or pending roll(s) "
                "from an earlier run; pass an empty --out directory or remove that one"
            )


def publish_last_rolls(out: Path, tables: Sequence[str], recovery_dir: Path) -> None:
    """Publish what the run's last snapshots committed (durable by the time a run ends),
    holding each table's writer lock so that no compaction swaps a directory meanwhile."""
    for table in tables:
        table_dir = out / table
        if table_dir.is_dir():
            with contextlib.closing(hold_for_writing(table_dir)):
                publish_committed_rolls(table_dir, recovery_dir)
