"""Who may change a table directory: one run writes it, compaction owns it briefly.

A run *claims* each table it writes for its whole life (:func:`claim_table`): the
claim file names the run, and every process of that run holds a shared ``flock`` on
the run lock, so a second run on the same table is refused at once while a process
of the first still lives. Every sink partition also holds a shared ``flock`` on
``table/.eventlake.lock`` while it writes; ``eventlake compact`` takes it exclusively
and refuses to start while a flow holds it. The kernel drops the locks of a killed
process, so a crash never leaves a table locked or claimed. Locks are per host: flows
writing one table from several hosts over a network file system are not covered.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from common.errors import ConfigError, EventlakeError
from common.log import LOGGER

LOCK_NAME = ".eventlake.lock"
CLAIM_NAME = ".eventlake-claim.json"
_RUN_LOCK = ".eventlake-run.lock"
_CLAIM_MUTEX = ".eventlake-claim.lock"


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


@contextlib.contextmanager
def locked(path: Path, operation: int) -> Iterator[None]:
    """``flock`` ``operation`` on ``path`` (created if needed) while inside."""
    with path.open("a") as lock:
        fcntl.flock(lock, operation)
        yield


def claim_table(table_dir: Path, run_id: str, holder: Mapping[str, Any]) -> IO[str]:
    """Hold ``table_dir`` for the run ``run_id`` until the returned file is closed (or the
    process dies). The processes of one run share the claim; ``holder`` (pid, host,
    since, where it checkpoints) is recorded for the message another run gets.

    ConfigError at once, naming the holder, if a live process of another run holds it.
    """
    table_dir.mkdir(parents=True, exist_ok=True)
    with locked(table_dir / _CLAIM_MUTEX, fcntl.LOCK_EX):
        run_lock = (table_dir / _RUN_LOCK).open("a")
        if lock_now(run_lock, fcntl.LOCK_EX):  # no live process holds it: the first taker
            temp = table_dir / f".{CLAIM_NAME}.tmp"
            temp.write_text(json.dumps({**holder, "run": run_id}))
            temp.replace(table_dir / CLAIM_NAME)
        elif (claim := _read_claim(table_dir)).get("run") != run_id:
            run_lock.close()
            raise ConfigError(_claimed_message(table_dir, claim))
        fcntl.flock(run_lock, fcntl.LOCK_SH)  # every taker holds the mutex: no race here
    return run_lock


def _read_claim(table_dir: Path) -> dict[str, Any]:
    try:
        claim: dict[str, Any] = json.loads((table_dir / CLAIM_NAME).read_text())
    except (OSError, ValueError):  # never claimed, or damaged: no live holder to name
        return {}
    return claim


def _claimed_message(table_dir: Path, claim: Mapping[str, Any]) -> str:
    """What a refused run is told; the holder's record is shown as text only, since anyone
    who can write the table can write it."""
    shown = {key: "".join(c for c in str(claim.get(key, "?")) if c.isprintable())
             for key in ("pid", "host", "since", "recovery_dir")}  # fmt: skip
    checkpoints = claim.get("recovery_dir")
    where = f"--recovery-dir {shown['recovery_dir']}" if checkpoints else "no --recovery-dir"
    return (
        f"{table_dir} is being written by another run (pid {shown['pid']} on host "
        f"{shown['host']} since {shown['since']}, {where}); two runs on one "
        "table would overwrite each other's files: wait for that run to end or stop it, or "
        "pass another --out"
    )


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
