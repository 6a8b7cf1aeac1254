"""Read bytewax's recovery partitions (SQLite files under ``--recovery-dir``).

bytewax 0.21 keeps, in every ``part-N.sqlite3``: ``exs`` (one row per
execution: worker count and resume epoch), ``fronts`` (each worker's
frontier) and ``snaps`` (each step's pickled state per key and epoch).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from common.errors import EventlakeError
from common.exits import exit_description
from common.log import LOGGER
from sinks.table_lock import locked

CREATE_LOCK = ".create.lock"
"""Held exclusively while a run creates the partitions, shared while a reader opens them,
so that no reader sees a partition half made."""


RUN_ID_FILE = "run-id"
"""Names the run that checkpoints in the directory: in its files and its claims."""


def new_run_id() -> str:
    """A run id no other run has: 12 hex digits."""
    return uuid.uuid4().hex[:12]


def read_run_id(directory: Path) -> str | None:
    """The id of the run that checkpoints in ``directory``; None if none was made."""
    try:
        return (directory / RUN_ID_FILE).read_text().strip()
    except FileNotFoundError:
        return None


def run_id_of(directory: Path) -> str:
    """The id of the run that checkpoints in ``directory``, made on first use (the
    processes of one run, starting together, all get the same)."""
    path = directory / RUN_ID_FILE
    if not path.exists():
        temp = directory / f".{RUN_ID_FILE}.{new_run_id()}.tmp"
        temp.write_text(new_run_id())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(temp, path)
        temp.unlink()
    return path.read_text().strip()


class RecoveryStoreError(EventlakeError):
    """A recovery partition could not be read: the checkpoint cannot be trusted."""


class _Partitions:
    """Reads of the recovery partitions with this process's ``sqlite3``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._connections: list[tuple[Path, sqlite3.Connection]] = []

    def read(self, query: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Rows of ``query`` over every partition; RecoveryStoreError naming the
        partition that cannot be read (a resume must not start from part of them)."""
        if not self._connections and self._directory.is_dir():
            with locked(self._directory / CREATE_LOCK, fcntl.LOCK_SH):
                paths = sorted(self._directory.glob("part-*.sqlite3"))
                self._connections = [(path, _connect(path)) for path in paths]
        rows: list[Any] = []
        for path, connection in self._connections:
            try:
                rows += connection.execute(query, parameters)
            except sqlite3.Error as err:
                raise RecoveryStoreError(
                    f"cannot read the checkpoint partition {path}: {err}; the recovery "
                    "directory is damaged or was changed by hand. Restore it, or start over "
                    "with a new --recovery-dir and an empty --out"
                ) from None
        return rows

    def close(self) -> None:
        for _, connection in self._connections:
            connection.close()
        self._connections = []


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, check_same_thread=False)
    except sqlite3.Error as err:
        raise RecoveryStoreError(f"cannot open the checkpoint partition {path}: {err}") from None


_Answer = tuple[list[Any], str | None]
"""A helper's answer: the rows and None, or no rows and the error's text."""
_HELPER_LOST = (OSError, EOFError, pickle.UnpicklingError)
"""What asking a helper that has died raises (a closed pipe, or a cut answer)."""


def _ask(helper: subprocess.Popen[bytes], query: str, parameters: tuple[Any, ...]) -> _Answer:
    """``helper``'s answer to ``query``; one of :data:`_HELPER_LOST` if it has died."""
    assert helper.stdin is not None and helper.stdout is not None
    pickle.dump((query, parameters), helper.stdin)
    helper.stdin.flush()
    answer: _Answer = pickle.load(helper.stdout)
    return answer


class _PartitionsElsewhere:
    """The same reads, done by a helper process (``python -m sinks.recovery_store``).

    bytewax links its own copy of SQLite. A second copy in the same process cannot
    see the first one's POSIX locks, so it takes itself for the only connection and
    resets the WAL's shared memory that bytewax has mapped: bytewax then dies of
    SIGBUS. A process of its own keeps the copies apart.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._helper: subprocess.Popen[bytes] | None = None

    def read(self, query: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Rows of ``query``, as :meth:`_Partitions.read` gives them. A helper that has
        died (killed, say) is replaced, with a warning; RecoveryStoreError if the new one
        cannot answer either."""
        helper = self._running()
        try:
            rows, error = _ask(helper, query, parameters)
        except _HELPER_LOST:
            LOGGER.warning("the checkpoint reader process %s; starting a new one", self._discard())
            rows, error = self._ask_a_new_helper(query, parameters)
        if error is not None:
            raise RecoveryStoreError(error)
        return list(rows)

    def _ask_a_new_helper(self, query: str, parameters: tuple[Any, ...]) -> _Answer:
        helper = self._running()
        try:
            return _ask(helper, query, parameters)
        except _HELPER_LOST:
            raise RecoveryStoreError(
                f"the new checkpoint reader process {self._discard()} as well, before it "
                "answered (its error, if it wrote one, is above)"
            ) from None

    def _running(self) -> subprocess.Popen[bytes]:
        """The helper, started if there is none (OSError if it cannot be)."""
        if self._helper is None:
            command = [sys.executable, "-P", "-m", "sinks.recovery_store", str(self._directory)]
            # A session of its own: Ctrl-C on the terminal stops the run, which still
            # reads through the helper at its last snapshot; the helper ends with stdin.
            self._helper = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
            )
        return self._helper

    def _discard(self) -> str:
        """Be done with the helper (killed first if it still runs, out of step), and say
        how it ended."""
        helper, self._helper = self._helper, None
        assert helper is not None and helper.stdin is not None and helper.stdout is not None
        if helper.poll() is None:
            helper.kill()
        for pipe in (helper.stdin, helper.stdout):
            with contextlib.suppress(OSError):  # a request still buffered for a dead reader
                pipe.close()
        return f"(pid {helper.pid}) {exit_description(helper.wait())}"

    def close(self) -> None:
        if self._helper is not None:
            self._helper.communicate()
            self._helper = None


class RecoveryStore:
    """The recovery partitions of one directory, kept open for repeated reads.

    Safe to share between worker threads; a read costs well under a millisecond
    once the partitions are open. In a process that runs a dataflow (``in_flow``)
    the reads happen in a helper process (see :class:`_PartitionsElsewhere`). Call
    :meth:`close` when done.
    """

    def __init__(self, directory: Path, in_flow: bool = False) -> None:
        self._lock = threading.Lock()
        self._partitions = _PartitionsElsewhere(directory) if in_flow else _Partitions(directory)

    def resume_epoch(self) -> int | None:
        """The epoch a run resumes from, or None if no run ever started.

        bytewax resumes at the slowest worker's frontier of the latest execution;
        a worker that recorded no frontier yet counts with the execution's own
        resume epoch.
        """
        executions = self._read("SELECT ex_num, worker_count, resume_epoch FROM exs")
        fronts = self._read("SELECT ex_num, worker_index, worker_frontier FROM fronts")
        if not executions:
            return None
        latest, workers, started_at = max(executions)
        frontiers = {worker: frontier for ex, worker, frontier in fronts if ex == latest}
        return int(min(frontiers.get(worker, started_at) for worker in range(workers)))

    def committed_states(self, step_id: str, key: str | None = None) -> dict[str, Any]:
        """The state per key of step ``step_id`` (only ``key``'s if given) that a resume
        would restore; empty when nothing was committed, and keys whose state was
        discarded are absent."""
        epoch = self.resume_epoch()
        if epoch is None:
            return {}
        query = "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ? AND "
        if key is None:
            rows = self._read(query + "snap_epoch < ?", (step_id, epoch))
        else:
            rows = self._read(query + "state_key = ? AND snap_epoch < ?", (step_id, key, epoch))
        latest: dict[str, tuple[int, bytes | None]] = {}
        for state_key, snap_epoch, change in rows:
            if state_key not in latest or snap_epoch > latest[state_key][0]:
                latest[state_key] = (snap_epoch, change)
        return {state_key: pickle.loads(change) for state_key, (_, change) in latest.items()
                if change}  # fmt: skip

    def close(self) -> None:
        """Close the partitions (a later read opens them again)."""
        with self._lock:
            self._partitions.close()

    def _read(self, query: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._partitions.read(query, parameters)


def resume_epoch(directory: Path) -> int | None:
    """:meth:`RecoveryStore.resume_epoch` of ``directory``, read once."""
    with contextlib.closing(RecoveryStore(directory)) as store:
        return store.resume_epoch()


def committed_states(directory: Path, step_id: str) -> dict[str, Any]:
    """:meth:`RecoveryStore.committed_states` of ``directory``, read once."""
    with contextlib.closing(RecoveryStore(directory)) as store:
        return store.committed_states(step_id)


def _serve(directory: Path) -> None:
    """The helper of :class:`_PartitionsElsewhere`: answer pickled queries on stdin
    with pickled rows on stdout until stdin closes."""
    partitions = _Partitions(directory)
    while True:
        try:
            query, parameters = pickle.load(sys.stdin.buffer)
        except EOFError:
            break
        try:  # (rows, None), or ([], the error's text): the class is __main__'s here
            answer: _Answer = (partitions.read(query, parameters), None)
        except RecoveryStoreError as err:
            answer = ([], str(err))
        pickle.dump(answer, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    partitions.close()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
