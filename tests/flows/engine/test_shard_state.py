"""Shards as bytewax keeps them: what a checkpoint holds, when shards are snapshotted, and
sessions cut at a maximum length; route + shards, and one dataflow on bytewax.testing."""

from __future__ import annotations

import pickle
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from common.units import UTC_MICROS
from flows.engine.aggregations import Count, Distinct, Quantiles, Stat, TopK
from flows.engine.routing import new_shard, route, shards_state, windowed
from flows.engine.shard import Shard
from flows.engine.shard_state import OpenWindowCeiling, ShardLogic
from flows.engine.tables import TableSpec
from flows.engine.windows import Session, Tumbling
from sources.batches import DecodedBatch
from tests.flows import oracle
from tests.flows.engine.test_shard import LATENESS, MINUTE, SCHEMA, Engine, S

HOUR = 60 * MINUTE
EVERY_KIND = (Count(), Stat("mean", "value"), Quantiles("value", (0.5,)), Distinct("key"),
              TopK("key", 2))  # fmt: skip
"""One aggregation of each kind of state: int, moments and the three sketches."""


def _batch(events: list[tuple[str, int]], **progress: Any) -> DecodedBatch:
    """Events (key, seconds) of partition 0 of 1, the value of each its seconds."""
    records = pa.table(
        {
            "ts": pa.array([t * S for _, t in events], pa.int64()).cast(UTC_MICROS),
            "key": [key for key, _ in events],
            "value": [float(t) for _, t in events],
        },
        schema=SCHEMA,
    )
    max_us = max((t * S for _, t in events), default=None)
    return DecodedBatch(records, partition=0, partitions=1, max_us=max_us, execution=1, **progress)


def _closed_rows(spec: TableSpec, shards: dict[str, Shard], batch: DecodedBatch) -> list[Any]:
    """``batch`` through route and ``shards`` (made as needed): the rows of the windows
    it closed."""
    rows: list[Any] = []
    for key, shard_input in route(spec, "ts", LATENESS, batch):
        emitted = shards.setdefault(key, new_shard(spec, LATENESS)).process(spec, shard_input)
        rows += [] if emitted.closed is None else emitted.closed.to_pylist()
    return sorted(rows, key=lambda row: (row["key"], row["window_start"]))


def test_a_window_shard_restored_from_its_snapshot_goes_on_as_if_never_stopped() -> None:
    spec = TableSpec("t", ("key",), Tumbling(MINUTE), EVERY_KIND, SCHEMA)
    first = _batch([(key, t) for t in range(0, 100, 7) for key in "abcde"])
    rest = _batch([(key, t) for t in range(100, 200, 5) for key in "abcdef"], ended=True)
    running: dict[str, Shard] = {}
    before = _closed_rows(spec, running, first)
    checkpointed = {
        key: ShardLogic(spec, shard, LATENESS, OpenWindowCeiling()).snapshot().restored()
        for key, shard in running.items()
    }
    after = _closed_rows(spec, checkpointed, rest)
    assert after == _closed_rows(spec, running, rest)
    assert {row["key"] for row in before + after} == set("abcdef")
    assert sum(row["count"] for row in before + after) == 5 * 15 + 6 * 20


def test_a_window_of_a_count_and_two_sums_checkpoints_in_under_160_bytes() -> None:
    """Columns, not an object per window: 138 bytes with keys of 12 characters (214 as
    Python objects)."""
    aggregations = (Count(), Stat("sum", "value"), Stat("sum", "value", "again"))
    spec = TableSpec("t", ("key",), Tumbling(HOUR), aggregations, SCHEMA)
    keys = 10_000
    shards: dict[str, Shard] = {}
    _closed_rows(
        spec, shards, _batch([(f"user-{index:07d}", index % 3000) for index in range(keys)])
    )
    assert sum(shard.open_windows() for shard in shards.values()) == keys
    assert sum(len(pickle.dumps(shard)) for shard in shards.values()) / keys < 160


def test_a_batch_with_no_rows_and_no_news_snapshots_no_shard(tmp_path: Path) -> None:
    """Heartbeats (a quiet partition's empty batches) wake no shard, so an idle run writes
    no shard into its checkpoints; rows, and the end of input, still do."""
    heartbeats = 3
    batches = [
        _batch([(f"k{index}", 10) for index in range(40)]),
        *[_batch([]) for _ in range(heartbeats)],
        _batch([], ended=True),
    ]
    spec = TableSpec("t", ("key",), Tumbling(MINUTE), (Count(),), SCHEMA)
    flow = Dataflow("f")
    windows = windowed("t", op.input("in", flow, TestingSource(batches)), spec, "ts", LATENESS,
                       OpenWindowCeiling())  # fmt: skip
    closed: list[tuple[str, pa.Table]] = []
    op.output("out", windows.rows, TestingSink(closed))
    init_db_dir(tmp_path, 1)  # type: ignore[no-untyped-call]
    recovery = RecoveryConfig(str(tmp_path), backup_interval=timedelta(days=1))  # type: ignore[no-untyped-call]
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    with sqlite3.connect(tmp_path / "part-0.sqlite3") as db:
        query = "SELECT DISTINCT snap_epoch FROM snaps WHERE step_id = ?"
        source_epochs = db.execute(query, ("f.in",)).fetchall()
        shard_epochs = db.execute(query, (shards_state("f", "t"),)).fetchall()
    assert sum(table.num_rows for _, table in closed) == 40
    assert len(shard_epochs) == len(source_epochs) - heartbeats


def test_a_user_active_every_29_minutes_gets_a_session_per_cut_as_the_oracle_says() -> None:
    """With a 30-minute gap the user's session would never end; with --max-session 2h it
    ends at every second hour (UTC), is emitted as soon as the watermark passes that, and
    the next event starts a new one."""
    gap, longest = 30 * MINUTE, 2 * HOUR
    engine = Engine(Session(gap, longest))
    times = [("u", minute * 60) for minute in range(10, 10 * 60, 29)]
    times += [("v", 3 * 3600 + 100), ("v", 3 * 3600 + 700)]
    times.sort(key=lambda event: event[1])
    closed: list[dict[str, Any]] = []
    emitted_while_active = 0
    for index, event in enumerate(times):
        rows, late = engine.send(0, [event], ended=index == len(times) - 1)
        assert late == []
        closed += rows
        if index < len(times) - 1:
            emitted_while_active += sum(row["key"] == "u" for row in rows)
    events = [{"key": key, "_us": t * S} for key, t in times]
    expected = oracle.sessions(events, "key", gap, longest)
    got = {(row["key"], oracle.micros(row["window_start"])): row for row in closed}
    oracle.assert_capped_sessions(got, expected, gap, longest)
    assert len([key for key, _ in expected if key == "u"]) == 5
    assert emitted_while_active == 4
