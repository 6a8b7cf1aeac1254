"""Who may change a table directory: running flows share it, compaction owns it.

Every sink partition holds a shared ``flock`` on ``table/.eventlake.lock``
while it runs; ``eventlake compact`` takes it exclusively and refuses to start
while a flow holds it. The kernel drops the locks of a killed process, so a
crash never leaves a table locked. Locks are per host: flows writing one
table from several hosts over a network file system are not covered.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from common.errors import EventlakeError
from common.log import LOGGER

LOCK_NAME = ".eventlake.lock"


class TableBusyError(EventlakeError):
    """A flow is writing the table that a maintenance command wants to change."""


def lock_now(lock: IO[str], operation: int) -> bool:
    """Take ``flock`` ``operation`` (LOCK_SH or LOCK_EX) on ``lock`` without waiting;
    False if another process holds a conflicting lock."""
    try:
        fcntl.flock(lock, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def hold_for_writing(table_dir: Path) -> IO[str]:
    """A shared lock on ``table_dir`` (created if needed), held until the returned
    file is closed; waits, saying so, while a compaction runs."""
    table_dir.mkdir(parents=True, exist_ok=True)
    lock = (table_dir / LOCK_NAME).open("a")
    if not lock_now(lock, fcntl.LOCK_SH):
        LOGGER.info("waiting for the compaction of %s to finish", table_dir)
        fcntl.flock(lock, fcntl.LOCK_SH)
    return lock


@contextlib.contextmanager
def hold_for_compaction(table_dir: Path) -> Iterator[None]:
    """The exclusive lock on ``table_dir`` while inside; TableBusyError at once if a
    flow is writing it."""
    with (table_dir / LOCK_NAME).open("a") as lock:
        if not lock_now(lock, fcntl.LOCK_EX):
            raise TableBusyError(
                f"a running flow is writing {table_dir}; stop it (or let its bounded run "
                "finish), then compact again"
            )
        yield
