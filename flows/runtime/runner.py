"""Run a dataflow in this process and surface eventlake errors from inside it."""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from common.errors import ConfigError, EventlakeError
from flows.runtime.panics import panics_unprinted


@dataclass(frozen=True)
class Processes:
    """The processes of one run: this one's index and every process's HOST:PORT, or how
    many local processes this command starts and supervises."""

    process_id: int = 0
    addresses: tuple[str, ...] = ()
    """Empty for a single-process run."""
    spawn: int = 1
    """``--processes``: above 1, this command runs no flow itself but starts and
    supervises that many local processes (:mod:`flows.runtime.supervisor`)."""

    @property
    def count(self) -> int:
        """How many processes the run has (1 for a single-process run)."""
        return max(len(self.addresses), 1)


def parse_processes(
    process_id: int | None, addresses: str | None, spawn: int = Processes.spawn
) -> Processes:
    """The :class:`Processes` for ``--processes`` or ``-i``/``-a``, or ConfigError naming
    the fix."""
    if spawn > 1 and (addresses, process_id) != (None, None):
        raise ConfigError(
            "--processes starts a local run of its own; pass either --processes or "
            "--process-id with --addresses"
        )
    if addresses is None:
        if process_id not in (None, 0):
            raise ConfigError("--process-id needs --addresses, the list of every process")
        return Processes(spawn=spawn)
    listed = tuple(address.strip() for address in addresses.split(";") if address.strip())
    malformed = [address for address in listed if not re.fullmatch(r"[^:\s]+:\d+", address)]
    if malformed or not listed:
        raise ConfigError(f"--addresses {addresses!r}: write HOST:PORT;HOST:PORT, one per process")
    if process_id is None or process_id >= len(listed):
        raise ConfigError(
            f"--process-id must be given and below {len(listed)}, the number of --addresses"
        )
    return Processes(process_id, listed)


SINGLE_PROCESS = Processes()
YOUNG_COLLECTION_EVERY = 50_000
"""Allocations between collections of the youngest generation during a run."""


def run_dataflow(
    flow: Dataflow,
    workers: int = 1,
    epoch_interval: timedelta | None = None,
    recovery: RecoveryConfig | None = None,
    processes: Processes = SINGLE_PROCESS,
) -> None:
    """Run ``flow`` with ``workers`` worker threads in each of ``processes`` until its
    input ends.

    With ``recovery``, state is snapshotted every ``epoch_interval`` and a
    rerun resumes from the last snapshot. An :class:`EventlakeError` raised by
    an operator is re-raised as itself (bytewax wraps operator exceptions), so
    its message reaches the user, without bytewax's panic report
    (:mod:`flows.runtime.panics`).
    """
    try:
        with _collecting_for_batches(), panics_unprinted():
            cli_main(  # type: ignore[no-untyped-call]
                flow,
                workers_per_process=workers,
                process_id=processes.process_id if processes.addresses else None,
                addresses=list(processes.addresses) or None,
                epoch_interval=epoch_interval,
                recovery_config=recovery,
            )
    except Exception as err:
        cause = _eventlake_cause(err)
        if cause is not None:
            raise cause from err
        raise


@contextlib.contextmanager
def _collecting_for_batches() -> Iterator[None]:
    """Python's cyclic garbage collector tuned for a run, then restored.

    A run allocates tens of thousands of short-lived objects per batch (one per
    Kafka message). With the default threshold that is a young collection every
    700 allocations, and every few hundred of those a full one that scans all
    long-lived state. What start-up built is frozen (never scanned again) and
    the youngest generation is collected every :data:`YOUNG_COLLECTION_EVERY`
    allocations.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _eventlake_cause(err: BaseException | None) -> EventlakeError | None:
    while err is not None:
        if isinstance(err, EventlakeError):
            return err
        err = err.__cause__ or err.__context__
    return None
