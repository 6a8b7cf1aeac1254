"""Watermark, lateness and the emit-once rule, on hand-built batches through route + shards."""

from __future__ import annotations

import zlib
from typing import Any

import pyarrow as pa

from common.units import UTC_MICROS
from flows.engine.aggregations import Count, Stat
from flows.engine.routing import SHARDS, late_rows, new_shard, route, shard_of
from flows.engine.shard import HELD_MAX, NEVER, PartitionClock, Shard, ShardInput, WindowShard
from flows.engine.tables import TableSpec
from flows.engine.windows import Hopping, Session, Tumbling, WindowSpec
from sources.batches import DecodedBatch

S = 1_000_000
MINUTE = 60 * S
LATENESS = 5 * S
SCHEMA = pa.schema([("ts", UTC_MICROS), ("key", pa.string()), ("value", pa.float64())])


def spec(window: WindowSpec) -> TableSpec:
    return TableSpec("t", ("key",), window, (Count(), Stat("sum", "value")), SCHEMA)


class Engine:
    """route() and one shard per shard key: the flow's path without bytewax."""

    def __init__(
        self, window: WindowSpec, partitions: int = 1, floor_us: int | None = None
    ) -> None:
        self.floor_us = floor_us
        self.spec = spec(window)
        self.partitions = partitions
        self.shards: dict[str, Shard] = {}
        self.prior: dict[int, int] = {}

    def send(
        self,
        partition: int,
        events: list[tuple[str, int]],
        ended: bool = False,
        idle: bool = False,
        behind: bool = False,
        execution: int = 1,
        stopping: bool = False,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Events are (key, seconds); returns (closed window rows, late rows)."""
        records = pa.table(
            {
                "ts": pa.array([t * S for _, t in events], pa.int64()).cast(UTC_MICROS),
                "key": [key for key, _ in events],
                "value": [1.0] * len(events),
            }
        )
        max_us = max((t * S for _, t in events), default=None)
        batch = DecodedBatch(
            records, partition=partition, partitions=self.partitions, max_us=max_us,
            prior_max_us=self.prior.get(partition), ended=ended, idle=idle, behind=behind,
            execution=execution, stopping=stopping,
        )  # fmt: skip
        if max_us is not None:
            self.prior[partition] = max(self.prior.get(partition, max_us), max_us)
        closed: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        for shard_key, shard_input in route(self.spec, "ts", LATENESS, batch, self.floor_us):
            shard = self.shards.setdefault(shard_key, new_shard(self.spec, LATENESS))
            emitted = shard.process(self.spec, shard_input)
            closed += [] if emitted.closed is None else emitted.closed.to_pylist()
            late += [row for table in late_rows(self.spec, emitted) for row in table.to_pylist()]
        return closed, late

    def open_keys(self) -> set[Any]:
        keys: set[Any] = set()
        for shard in self.shards.values():
            assert isinstance(shard, WindowShard), "sessions keep no open dict"
            keys |= set(shard.open)
        return keys


def _window(row: dict[str, Any]) -> tuple[str, int, int]:
    return row["key"], int(row["window_start"].timestamp()), row["count"]


def test_window_closes_once_the_watermark_passes_its_end() -> None:
    engine = Engine(Tumbling(MINUTE))
    assert engine.send(0, [("a", 0), ("a", 30), ("b", 59)]) == ([], [])
    assert engine.send(0, [("a", 64)]) == ([], [])  # watermark 59 < 60
    closed, late = engine.send(0, [("a", 65)])  # watermark 60: [0, 60) closes
    assert sorted(map(_window, closed)) == [("a", 0, 2), ("b", 0, 1)]
    assert late == []


def test_late_event_after_its_key_went_idle_is_late_not_a_second_window() -> None:
    engine = Engine(Tumbling(MINUTE))
    engine.send(0, [("a", 10)])
    closed, _ = engine.send(0, [("b", 200)])
    assert [_window(row) for row in closed] == [("a", 0, 1)]
    assert ("a",) not in engine.open_keys()  # the closed window's state is freed
    closed, late = engine.send(0, [("a", 20)])
    assert closed == []
    assert [(row["key"], int(row["ts"].timestamp())) for row in late] == [("a", 20)]
    assert "closed" in late[0]["reason"] and late[0]["table"] == "t"
    closed, late = engine.send(0, [("b", 400)], ended=True)
    assert all(_window(row)[:2] != ("a", 0) for row in closed)


def test_slow_partition_holds_the_watermark_so_its_events_are_on_time() -> None:
    engine = Engine(Tumbling(MINUTE), partitions=2)
    assert engine.send(0, [("a", 5), ("a", 300)]) == ([], [])  # partition 1 unseen: no watermark
    assert engine.send(1, [("a", 10)]) == ([], [])  # watermark = 10 - 5
    assert engine.send(0, [("a", 30)]) == ([], [])  # behind its own partition, but on time
    closed, late = engine.send(1, [("a", 20), ("a", 130)])
    assert late == []
    assert [_window(row) for row in closed] == [("a", 0, 4)]  # watermark 125


def test_ended_and_idle_partitions_do_not_hold_the_watermark_back() -> None:
    engine = Engine(Tumbling(MINUTE), partitions=3)
    engine.send(0, [("a", 10)])
    engine.send(1, [], ended=True)
    assert engine.send(2, [], idle=True)[0] == []  # watermark 5: nothing to close yet
    closed, _ = engine.send(0, [("a", 100)])
    assert [_window(row) for row in closed] == [("a", 0, 1)]
    engine.send(2, [("a", 90)])  # the idle partition speaks again and holds it back
    closed, _ = engine.send(0, [("a", 300)])
    assert closed == []


def test_end_of_input_closes_every_window() -> None:
    engine = Engine(Tumbling(MINUTE), partitions=2)
    engine.send(0, [("a", 10), ("b", 70)], ended=True)
    closed, _ = engine.send(1, [("a", 20)], ended=True)
    assert sorted(map(_window, closed)) == [("a", 0, 2), ("b", 60, 1)]


def test_hopping_counts_each_event_in_every_window() -> None:
    engine = Engine(Hopping(2 * MINUTE, MINUTE))
    closed, _ = engine.send(0, [("a", 30), ("a", 90)], ended=True)
    assert sorted(map(_window, closed)) == [("a", -60, 1), ("a", 0, 2), ("a", 60, 1)]


def test_bridging_event_merges_two_sessions() -> None:
    engine = Engine(Session(10 * MINUTE), partitions=2)
    assert engine.send(1, [("v", 0)]) == ([], [])  # a slow partition holds the watermark at 0
    assert engine.send(0, [("u", 0), ("u", 1500)]) == ([], [])  # two sessions, gap 25 min
    closed, late = engine.send(1, [("u", 540), ("u", 1080)])  # 9 and 18 min bridge them
    assert [row["key"] for row in closed] == ["v"] and late == []
    engine.send(0, [], ended=True)
    closed, _ = engine.send(1, [], ended=True)
    sessions = [row for row in closed if row["key"] == "u"]
    assert len(sessions) == 1
    assert sessions[0]["count"] == 4
    assert sessions[0]["window_start"].timestamp() == 0
    assert sessions[0]["window_end"].timestamp() == 1500 + 600


def test_sessions_far_apart_stay_apart() -> None:
    engine = Engine(Session(10 * MINUTE))
    closed, _ = engine.send(0, [("u", 0), ("u", 100), ("u", 5000)], ended=True)
    assert sorted((r["count"], int(r["window_start"].timestamp())) for r in closed) == [
        (1, 5000),
        (2, 0),
    ]


def test_clock_without_partitions_has_no_watermark() -> None:
    clock = PartitionClock(LATENESS)
    assert clock.watermark(MINUTE) == NEVER
    clock.observe(ShardInput(partition=0, partitions=1, max_us=90 * S, ended=True))
    assert clock.watermark(MINUTE) == 150 * S  # past every window of its events


def test_a_later_run_judges_events_of_windows_closed_at_the_end_of_an_earlier_one() -> None:
    engine = Engine(Tumbling(MINUTE), partitions=2)
    engine.send(0, [("a", 10), ("a", 70)], ended=True)
    closed, _ = engine.send(1, [("a", 20)], ended=True)
    assert sorted(_window(row) for row in closed) == [("a", 0, 2), ("a", 60, 1)]

    engine.floor_us = 70 * S  # a rerun: the newest event it resumes from
    closed, late = engine.send(1, [("a", 80), ("a", 130)], execution=2)
    assert closed == [] and [row["ts"].timestamp() for row in late] == [80]
    engine.send(1, [], ended=True, execution=2)
    closed, _ = engine.send(0, [], ended=True, execution=2)
    assert [_window(row) for row in closed] == [("a", 120, 1)]


def test_a_stopped_partition_holds_the_watermark_at_its_newest_event() -> None:
    """The end of a run that keeps its windows open: the next run's events of the
    slower partition are on time; a partition that never had an event holds nothing."""
    engine = Engine(Tumbling(MINUTE), partitions=3)
    engine.send(0, [("a", 10), ("a", 200)], stopping=True)
    closed, _ = engine.send(2, [], stopping=True, idle=True)  # never had an event
    assert closed == []
    closed, _ = engine.send(1, [("a", 70)], stopping=True)  # watermark 65
    assert [_window(row) for row in closed] == [("a", 0, 1)]
    engine.floor_us = 200 * S
    closed, late = engine.send(1, [("a", 100), ("a", 130)], execution=2)
    assert late == [] and closed == []  # partition 2 has not spoken in this run
    closed, _ = engine.send(2, [], ended=True, execution=2)
    assert [_window(row) for row in closed] == [("a", 60, 2)]  # watermark 125
    engine.send(0, [], ended=True, execution=2)
    closed, _ = engine.send(1, [], ended=True, execution=2)
    assert sorted(map(_window, closed)) == [("a", 120, 1), ("a", 180, 1)]


def test_at_the_end_of_a_run_a_shard_merges_every_row_it_holds() -> None:
    """What the checkpoint keeps open is merged, so open_windows counts it."""
    engine = Engine(Tumbling(60 * MINUTE), partitions=2)
    engine.send(0, [("a", 10), ("b", 20)])  # thin: rows, held until their window closes
    shards = engine.shards.values()
    assert sum(shard.held.rows() for shard in shards) == 2
    assert sum(shard.open_windows() for shard in shards) == 0
    engine.send(0, [], stopping=True)
    assert sum(shard.held.rows() for shard in shards) == 2  # partition 1 still reads
    engine.send(1, [], stopping=True, idle=True)
    assert sum(shard.held.rows() for shard in shards) == 0
    assert sum(shard.open_windows() for shard in shards) == 2


def test_partition_back_from_idle_cannot_reopen_a_closed_window() -> None:
    engine = Engine(Tumbling(MINUTE), partitions=2)
    engine.send(1, [("a", 5)])
    engine.send(1, [], idle=True)
    closed, _ = engine.send(0, [("a", 10), ("a", 100)])
    assert [_window(row) for row in closed] == [("a", 0, 2)]
    closed, late = engine.send(1, [("a", 30)], behind=True)
    assert closed == [] and [row["ts"].timestamp() for row in late] == [30]
    engine.send(0, [], ended=True)
    closed, _ = engine.send(1, [], ended=True)
    assert ("a", 0) not in [_window(row)[:2] for row in closed]  # emitted once only


def test_a_lull_on_every_partition_does_not_flush_open_windows() -> None:
    engine = Engine(Tumbling(MINUTE))
    engine.send(0, [("a", 10)])
    assert engine.send(0, [], idle=True) == ([], [])  # watermark stays at 10 - 5
    engine.send(0, [("a", 20)], behind=True)
    closed, _ = engine.send(0, [], ended=True)
    assert [_window(row) for row in closed] == [("a", 0, 2)]


def test_event_inside_an_open_session_merges_even_behind_the_watermark() -> None:
    engine = Engine(Session(10 * MINUTE), partitions=2)
    engine.send(1, [("u", 0), ("u", 3300), ("u", 3350)])  # u's session [3300, 3950) is open
    engine.send(0, [("v", 3600)])  # watermark 3345
    closed, late = engine.send(1, [("u", 3320)])  # behind the watermark, inside u's session
    assert late == [] and all(row["key"] != "u" or row["count"] == 1 for row in closed)
    engine.send(0, [], ended=True)
    closed, _ = engine.send(1, [], ended=True)
    assert sorted(r["count"] for r in closed if r["key"] == "u") == [3]


def test_event_behind_the_watermark_never_moves_a_session_start_back() -> None:
    """Moving an open session's start back could reach a session already emitted: the
    event that would do it is late, and no session is emitted twice."""
    engine = Engine(Session(90 * S), partitions=2)
    engine.send(0, [("a", 0)])
    engine.send(1, [("a", 95)])
    closed, _ = engine.send(0, [], idle=True)  # watermark 90 closes [0, 90)
    assert [(r["key"], r["count"]) for r in closed] == [("a", 1)]
    closed, late = engine.send(0, [("a", 6), ("a", 100)], behind=True)  # 6 would bridge both
    assert [r["key"] for r in late] == ["a"] and closed == []
    engine.send(0, [], ended=True)
    closed, _ = engine.send(1, [], ended=True)
    assert [(r["key"], r["count"]) for r in closed] == [("a", 2)]


def test_watermark_never_goes_back() -> None:
    shard = WindowShard(LATENESS)
    tumbling = spec(Tumbling(MINUTE))
    shard.process(tumbling, ShardInput(0, 2, max_us=100 * S))
    shard.process(tumbling, ShardInput(1, 2, max_us=200 * S))
    assert shard.watermark == 95 * S
    shard.process(tumbling, ShardInput(0, 2, idle=True))
    shard.process(tumbling, ShardInput(0, 2, max_us=120 * S))  # back from idle, behind
    assert shard.watermark == 195 * S


def test_a_slow_stream_holds_partials_not_every_row() -> None:
    """One event per batch into an hour-long window: the rows path, capped at HELD_MAX."""
    engine = Engine(Tumbling(60 * MINUTE))
    events = 3 * HELD_MAX[0]
    for second in range(events):
        engine.send(0, [("a", second)])
        assert all(len(shard.held.tables) <= HELD_MAX[0] for shard in engine.shards.values())
    closed, _ = engine.send(0, [], ended=True)
    assert [(row["key"], row["count"]) for row in closed] == [("a", events)]


def test_a_keys_shard_does_not_depend_on_the_keys_hashed_before() -> None:
    """Equal to a cache, not to repr: (True,) first must not give (1,) its shard."""
    expected = zlib.crc32(repr((1,)).encode()) % SHARDS
    shard_of((True,))
    assert shard_of((1,)) == expected


def test_open_windows_counts_every_open_window_of_every_key() -> None:
    engine = Engine(Hopping(MINUTE, 30 * S))
    dense = [(key, second) for second in range(0, 90, 2) for key in "abc"]  # as partials
    engine.send(0, dense)  # watermark 83: windows ending at 90 and 120 stay open

    def counted() -> int:
        return sum(shard.open_windows() for shard in engine.shards.values())

    def listed() -> int:
        return sum(len(windows) for shard in engine.shards.values()
                   for windows in shard.open.values())  # type: ignore[attr-defined]  # fmt: skip

    assert counted() == listed() > 0
    engine.send(0, [("a", 500)], ended=True)
    assert counted() == listed() == 0
