"""Stopping is cluster-wide: SIGINT/SIGTERM to any process of a run stops every process.

A process asked to stop ends its source partitions with a last batch flagged ``halt``.
That batch sends a notice to every partition of a listener sink; bytewax spreads a
fixed-partition sink's partitions over all workers of all processes (each worker is
primary for some while there are at least as many partitions as workers), so every
process hears it and sets its own stop event. Its readers then end too, with windows
kept open, and the whole run stops after a last snapshot, as the signalled process does.
"""

from __future__ import annotations

import threading

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from sources.batches import DecodedBatch

HALT_PARTS = 256
"""Partitions of the listener: at least the workers of any run, so that every worker
is primary for one. Fixed, so that a run may resume with another worker count."""


class _Listener(StatefulSinkPartition[bool, None]):
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def write_batch(self, values: list[bool]) -> None:
        if values:
            self._stop.set()

    def snapshot(self) -> None:
        return None


class HaltListener(FixedPartitionedSink[bool, None]):
    """Sets ``stop`` in every process that hears a halt notice."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def list_parts(self) -> list[str]:
        """Every partition, on every worker: bytewax balances them over all workers."""
        return [str(part) for part in range(HALT_PARTS)]

    def part_fn(self, item_key: str) -> int:
        """The partition a notice is addressed to."""
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Listener:
        """A partition that sets this process's stop event when a notice comes."""
        return _Listener(self._stop)


def _notices(batch: DecodedBatch) -> list[tuple[str, bool]]:
    """A notice to every listener partition for a batch that halts its partition."""
    return [(str(part), True) for part in range(HALT_PARTS)] if batch.halt else []


def stop_together(batches: Stream[DecodedBatch], stop: threading.Event) -> None:
    """Add the steps that set ``stop`` (this process's) when any process of the run halts."""
    op.output("halt_listener", op.flat_map("halt_notices", batches, _notices), HaltListener(stop))
