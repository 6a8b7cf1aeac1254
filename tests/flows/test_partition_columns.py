"""A field named like a Hive directory level (``date``, ``hour``) is refused before anything
starts under the layout that would shadow it, and is read back intact by pyarrow, DuckDB and
``eventlake inspect`` under a layout that does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_raw

START = datetime(2025, 3, 1, tzinfo=UTC)
EVENTS = 60
VALUES = {"date": {"d0", "d1", "d2"}, "hour": {"h0", "h1"}, "Date": {"D"}}


def _produce(broker: Broker, topic: str) -> None:
    events = [{"ts": (START + timedelta(minutes=i)).isoformat(), "date": f"d{i % 3}",
               "hour": f"h{i % 2}", "Date": "D"} for i in range(EVENTS)]  # fmt: skip
    produce_raw(broker.target, topic, [json.dumps(event).encode() for event in events])


def _aggregate(broker: Broker, topic: str, out: Path, key: str, *extra: str) -> list[str]:
    return ["aggregate", "--topic", topic, "--time-field", "ts", "--key", key, "--window",
            "10m", "--bounded", "--out", str(out), "--brokers", broker.target.bootstrap_servers,
            *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "layout", "way_out"),
    [("date", "day", "none"), ("hour", "hour", "day"), ("Date", "hour", "none")],
)
def test_a_field_named_like_a_directory_level_is_refused_or_read_back_intact(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, key: str, layout: str, way_out: str
) -> None:
    topic, out = new_topic(partitions=2), tmp_path / "out"
    _produce(broker, topic)

    refused = eventlake(*_aggregate(broker, topic, out, key, "--partition-by", layout))
    assert refused.returncode == 2
    assert f"column {key!r} has the name of the" in refused.stderr
    assert f"--partition-by {way_out}" in refused.stderr
    assert not out.exists(), "refused before anything started"

    done = eventlake(*_aggregate(broker, topic, out, key, "--partition-by", way_out))
    assert done.returncode == 0, done.stderr
    table = ds.dataset(out / "windows", partitioning="hive").to_table()
    assert set(table[key].to_pylist()) == VALUES[key]
    assert sum(table["count"].to_pylist()) == EVENTS
    files = f"{out}/windows/**/*.parquet"
    read = duckdb.sql(f"SELECT DISTINCT \"{key}\" FROM read_parquet('{files}', "
                      "hive_partitioning = true)").fetchall()  # fmt: skip
    assert {row[0] for row in read} == VALUES[key]
    shown = eventlake("inspect", str(out), "--table", "windows", "--head", "100", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {row[key] for row in json.loads(shown.stdout)["head"]["rows"]} == VALUES[key]


def test_a_time_field_named_date_is_refused_for_the_late_table(tmp_path: Path) -> None:
    """The late table keeps each event's fields, the time field included."""
    path = tmp_path / "pipeline.toml"
    path.write_text('topic = "t"\ntime_field = "date"\n[[aggregation]]\nkey = ["a"]\n'
                    'window = "1m"\n')  # fmt: skip
    result = eventlake("validate", str(path))
    assert result.returncode == 2
    assert "table late: column 'date' has the name of the date=… directories" in result.stderr
    assert eventlake("validate", str(path), "--partition-by", "none").returncode == 0
