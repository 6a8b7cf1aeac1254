"""The windowing engine under random interleavings of partitions that go idle, come back
behind the watermark, end or stop, and start again in a new run: no broker, route + shards
only."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flows.engine.moments import N
from flows.engine.routing import ROWS_PER_WINDOW, new_shard, route
from flows.engine.sessions import SessionShard
from flows.engine.shard import Shard, WindowShard
from flows.engine.windows import Hopping, Session, Tumbling, WindowSpec
from sources.batches import DecodedBatch
from tests.flows.engine.test_shard import LATENESS, MINUTE, S, spec

PARTITIONS = 3
KEYS = ("a", "b", "c", "d")


class EngineMachine(RuleBasedStateMachine):
    """Batches as the Kafka reader makes them (prior maxima, idle and catch-up flags, end
    of input, a new execution per run) through route() into the shards."""

    window: WindowSpec = Tumbling(MINUTE)
    rows_per_window = ROWS_PER_WINDOW
    """Small batches spread thin: mostly rows, grouped at the shard."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = spec(self.window)
        self.shards: dict[str, Shard] = {}
        self.execution = 1
        self.floor: int | None = None
        self.prior: dict[int, int] = {}
        self.returned: set[int] = set()
        self.idle_partitions: set[int] = set()
        self.ended: set[int] = set()
        self.sent = 0
        self.counted = 0
        self.late = 0
        self.emitted: Counter[tuple[Any, int]] = Counter()
        self.watermarks: dict[str, int] = {}

    def _batch(self, partition: int, events: list[tuple[str, int]], **flags: Any) -> None:
        records = pa.table(
            {
                "ts": pa.array([t * S for _, t in events], pa.int64()).cast(
                    pa.timestamp("us", "UTC")
                ),
                "key": [key for key, _ in events],
                "value": [1.0] * len(events),
            }
        )
        max_us = max((t * S for _, t in events), default=None)
        prior = self.prior.get(partition)
        behind = self._behind(partition, prior, returning=bool(events))
        batch = DecodedBatch(
            records, partition=partition, partitions=PARTITIONS, max_us=max_us,
            prior_max_us=prior, behind=behind, execution=self.execution, **flags,
        )  # fmt: skip
        if max_us is not None:
            self.prior[partition] = max(prior or max_us, max_us)
        self.sent += len(events)
        routed = route(self.spec, "ts", LATENESS, batch, self.floor, self.rows_per_window)
        for key, shard_input in routed:
            shard = self.shards.setdefault(key, new_shard(self.spec, LATENESS))
            emitted = shard.process(self.spec, shard_input)
            for window in [] if emitted.closed is None else emitted.closed.to_pylist():
                self.emitted[(window["key"], window["window_start"])] += 1
                self.counted += window["count"]
            self.late += 0 if emitted.late is None else emitted.late.num_rows
            assert shard.watermark >= self.watermarks.get(key, shard.watermark)
            self.watermarks[key] = shard.watermark

    def _behind(self, partition: int, prior: int | None, returning: bool) -> bool:
        """The reader's rule: the first batch back from idleness, then every batch until
        the partition has caught up with the newest event read."""
        first = returning and partition in self.idle_partitions
        if first:
            self.idle_partitions.discard(partition)
        elif partition not in self.returned:
            return False
        newest = max(self.prior.values(), default=None)
        caught_up = prior is not None and newest is not None and prior >= newest
        if caught_up and not first:
            self.returned.discard(partition)
        else:
            self.returned.add(partition)
        return True

    @rule(
        partition=st.integers(0, PARTITIONS - 1),
        events=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 1200)), max_size=8),
    )
    def data(self, partition: int, events: list[tuple[str, int]]) -> None:
        if partition not in self.ended:
            self._batch(partition, events)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def idle(self, partition: int) -> None:
        if partition not in self.ended:
            self._batch(partition, [], idle=True)
            self.idle_partitions.add(partition)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def end(self, partition: int) -> None:
        if partition not in self.ended:
            self._batch(partition, [], ended=True)
            self.ended.add(partition)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def stop(self, partition: int) -> None:
        """The end of a run that keeps its windows open (a signal, a bounded run that
        is not final); a partition that never had an event is idle as well."""
        if partition not in self.ended:
            self._batch(partition, [], stopping=True, idle=partition not in self.prior)
            self.ended.add(partition)

    @rule()
    def next_run(self) -> None:
        """A rerun on the same checkpoint, after the end of a bounded run or a stop:
        every partition reads again."""
        self.execution += 1
        self.floor = max(self.prior.values(), default=None)
        self.ended.clear()
        self.returned.clear()
        self.idle_partitions.clear()

    @invariant()
    def each_window_is_emitted_at_most_once(self) -> None:
        assert all(times == 1 for times in self.emitted.values()), self.emitted.most_common(1)

    @invariant()
    def every_row_is_counted_late_or_still_open(self) -> None:
        still_open = sum(map(_events_open, self.shards.values()))
        assert self.counted + self.late + still_open == self.sent


def _events_open(shard: Shard) -> int:
    """Events in a shard's open windows (counted by the first aggregation, a count),
    held rows included."""
    if isinstance(shard, SessionShard):
        merged = 0 if shard.open is None else int(shard.open.states[0][:, 0, N].sum())
    else:
        assert isinstance(shard, WindowShard)
        windows = [window for by_start in shard.open.values() for window in by_start.values()]
        merged = sum(window.states[0] for window in windows)
    return merged + shard.held.rows()


class PartialsMachine(EngineMachine):
    rows_per_window = 0.0
    """Every batch as partials."""


class HoppingMachine(EngineMachine):
    window = Hopping(2 * MINUTE, MINUTE)

    @invariant()
    def every_row_is_counted_late_or_still_open(self) -> None:
        """Each event is in two hopping windows: checked by the emit-once rule only."""


class SessionMachine(EngineMachine):
    window = Session(90 * S)


RUNS = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestTumbling = EngineMachine.TestCase
TestTumbling.settings = RUNS
TestTumblingPartials = PartialsMachine.TestCase
TestTumblingPartials.settings = RUNS
TestHopping = HoppingMachine.TestCase
TestHopping.settings = RUNS
TestSessions = SessionMachine.TestCase
TestSessions.settings = RUNS
