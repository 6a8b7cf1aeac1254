"""A backfill of disordered historical events through ``eventlake aggregate``: rows land
in the directories ``--partition-by`` names, one file per directory per roll however many
sink partitions there are, and every event is counted once or is late."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_raw

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 40
EVENTS = 12_000
KEYS = ("web", "api", None)


def _events(seed: int) -> list[dict[str, object]]:
    """Events over ``DAYS`` days, in order but up to a day out of it, some with null values."""
    rnd = random.Random(seed)
    spacing = timedelta(days=DAYS) / EVENTS
    events = []
    for i in range(EVENTS):
        ts = T0 + spacing * i - timedelta(seconds=rnd.uniform(0, 86_400) if i % 10 == 0 else 0)
        value = None if i % 50 == 0 else rnd.uniform(0, 100)
        events.append({"ts": ts.isoformat(), "k": KEYS[i % 3], "v": value})
    return events


def _hour(text: object) -> datetime:
    return datetime.fromisoformat(str(text)).replace(minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(("partition_by", "pattern"),
                         [("day", "date=*"), ("hour", "date=*/hour=*"), ("none", "")])  # fmt: skip
def test_a_backfill_writes_one_file_per_directory_and_counts_every_event(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, partition_by: str, pattern: str
) -> None:
    topic, out = new_topic(partitions=4), tmp_path / "out"
    events = _events(seed=len(partition_by))
    produce_raw(broker.target, topic, [json.dumps(event).encode() for event in events])

    done = eventlake("aggregate", "--topic", topic, "--time-field", "ts", "--key", "k",
                     "--value", "v", "--window", "1h", "--agg", "count,max", "--bounded",
                     "--partition-by", partition_by, "--out", str(out),
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip

    assert done.returncode == 0, done.stderr
    windows = ds.dataset(out / "windows", partitioning="hive").to_table().to_pylist()
    late = ds.dataset(out / "late", partitioning="hive").to_table().to_pylist()
    directories = sorted((out / "windows").glob(pattern)) if pattern else [out / "windows"]
    files = [sorted(directory.glob("*.parquet")) for directory in directories]
    assert [len(in_directory) for in_directory in files] == [1] * len(directories)
    counted = Counter({(row["k"], row["window_start"]): row["count"] for row in windows})
    places = {"day": {start.date() for _, start in counted}, "hour": {s for _, s in counted}}
    assert len(directories) == len(places.get(partition_by, {"."}))
    judged_late = Counter((row["k"], _hour(row["ts"])) for row in late)
    oracle = Counter((event["k"], _hour(event["ts"])) for event in events)
    assert counted + judged_late == oracle
    assert max(Counter((row["k"], row["window_start"]) for row in windows).values()) == 1
    assert _read_by_duckdb(out / "windows", partition_by) == counted


def _read_by_duckdb(table_dir: Path, partition_by: str) -> Counter[tuple[object, datetime]]:
    """Counts per (key, window) as DuckDB reads the table, its Hive columns checked."""
    hive = {"day": ["date"], "hour": ["date", "hour"], "none": []}[partition_by]
    relation = duckdb.sql(
        f"SELECT * FROM read_parquet('{table_dir}/**/*.parquet', hive_partitioning = true)"
    )
    assert [column for column in hive if column not in relation.columns] == []
    rows = relation.fetchall()
    key, start, count = (relation.columns.index(c) for c in ("k", "window_start", "count"))
    return Counter({(row[key], row[start].astimezone(UTC)): row[count] for row in rows})
