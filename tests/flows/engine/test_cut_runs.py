"""A result does not depend on where the input was cut into runs: a topic's events produced
in time order (out of order by less than the lateness), read in one run or in several runs
that each read what was produced before they started and keep their windows open, give the
same windows and none late, before and after a final run closes everything. route + shards,
no broker."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.engine.windows import Hopping, Session, Tumbling, WindowSpec
from tests.flows.engine.test_shard import MINUTE, Engine, S

PARTITIONS = 3
WINDOWS = {"tumbling": Tumbling(MINUTE), "hopping": Hopping(2 * MINUTE, MINUTE),
           "session": Session(90 * S)}  # fmt: skip
Produced = list[tuple[int, str, int]]
"""(partition, key, seconds) in the order they were produced."""
Events = list[list[tuple[str, int]]]
"""Per partition, (key, seconds) in offset order."""
Rows = list[tuple[Any, ...]]


@st.composite
def produced(draw: st.DrawFn) -> Produced:
    """Events moving forward in time, each up to 4 s (under the 5 s lateness) behind the
    newest before it, spread over the partitions (some may get none)."""
    steps = draw(st.lists(st.tuples(st.integers(0, PARTITIONS - 1), st.sampled_from("abc"),
                                    st.integers(-4, 30)), max_size=60))  # fmt: skip
    newest, events = 0, []
    for partition, key, step in steps:
        events.append((partition, key, max(newest + step, 0)))
        newest = max(newest, newest + step)
    return events


def by_partition(events: Produced) -> Events:
    """``events`` as the partitions hold them."""
    return [[(key, t) for part, key, t in events if part == partition]
            for partition in range(PARTITIONS)]  # fmt: skip


class Runs:
    """Runs on one checkpoint, fed as the Kafka reader feeds them: batches of 1-3 events,
    partitions interleaved at random, each partition's last batch of a run flagged
    ``stopping`` (windows kept open; idle too if it never had an event) or, in a final
    run, ``ended``."""

    def __init__(self, window: WindowSpec, seed: int) -> None:
        self.engine = Engine(window, PARTITIONS)
        self.shuffle = random.Random(seed)
        self.execution = 0
        self.closed: Rows = []
        self.late = 0

    def run(self, events: Events, final: bool = False) -> None:
        """One run over ``events`` (each partition's next messages)."""
        self.execution += 1
        self.engine.floor_us = max(self.engine.prior.values(), default=None)
        pending = {part: self._batches(events[part]) for part in range(PARTITIONS)}
        while pending:
            part = self.shuffle.choice(sorted(pending))
            batch = pending[part].pop(0)
            last = not pending[part]
            if last:
                del pending[part]
            never_had_one = part not in self.engine.prior and not batch
            flags = {"ended": last and final, "stopping": last and not final,
                     "idle": last and not final and never_had_one}  # fmt: skip
            closed, late = self.engine.send(part, batch, execution=self.execution, **flags)
            self.closed += [(r["key"], r["window_start"], r["window_end"], r["count"])
                            for r in closed]  # fmt: skip
            self.late += len(late)

    def _batches(self, events: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
        """``events`` in batches of 1-3; one empty batch if there are none."""
        batches, at = [], 0
        while at < len(events):
            size = self.shuffle.randint(1, 3)
            batches.append(events[at : at + size])
            at += size
        return batches or [[]]


@settings(max_examples=200, deadline=None)
@given(
    events=produced(),
    window=st.sampled_from(sorted(WINDOWS)),
    cuts=st.lists(st.floats(0, 1), max_size=5),
    seed=st.integers(0, 1000),
)
def test_runs_cut_anywhere_write_what_one_run_writes(
    events: Produced, window: str, cuts: list[float], seed: int
) -> None:
    whole, pieces = Runs(WINDOWS[window], seed), Runs(WINDOWS[window], seed + 1)
    whole.run(by_partition(events))
    read = 0
    for cut in sorted(cuts):  # each run reads what was produced before it started
        upto = round(cut * len(events))
        pieces.run(by_partition(events[read:upto]))
        read = upto
    pieces.run(by_partition(events[read:]))

    assert sorted(pieces.closed) == sorted(whole.closed)
    for runs in (whole, pieces):
        runs.run(by_partition([]), final=True)
    assert sorted(pieces.closed) == sorted(whole.closed)
    assert whole.late == pieces.late == 0
    counted = sum(row[3] for row in whole.closed)
    copies = 2 if window == "hopping" else 1  # an event is in two hopping windows
    assert counted == copies * len(events)
