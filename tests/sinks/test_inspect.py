"""`eventlake inspect`: per-table summaries that match what pyarrow reads, also mid-run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events, writing_flow


def test_summaries_match_the_files(demo_output: Path) -> None:
    result = eventlake("inspect", str(demo_output), "--json")
    assert result.returncode == 0, result.stderr
    summaries = {s["table"]: s for s in json.loads(result.stdout)["tables"]}
    assert set(summaries) == {p.name for p in demo_output.iterdir() if p.is_dir()}
    for table, summary in summaries.items():
        files = list((demo_output / table).rglob("*.parquet"))
        data = ds.dataset(demo_output / table, partitioning="hive").to_table()
        assert (summary["files"], summary["rows"]) == (len(files), data.num_rows)
        assert summary["bytes"] == sum(f.stat().st_size for f in files)
        assert summary["partitions"] == len({f.parent for f in files})
        if data.num_rows and "window_start" in data.column_names:
            bounds = pc.min_max(data["window_start"]).as_py()
            assert summary["first"] == bounds["min"].isoformat()
            assert summary["last"] == bounds["max"].isoformat()
            assert "window_start: timestamp[us, tz=UTC]" in summary["schema"]
    text = eventlake("inspect", str(demo_output))
    line = summaries["service_metrics"]
    assert f"service_metrics: {line['files']:,} files, {line['rows']:,} rows" in text.stdout


def test_head_shows_the_first_rows_in_time_order(demo_output: Path) -> None:
    result = eventlake("inspect", str(demo_output), "--table", "alerts", "--head", "3", "--json")
    rows = json.loads(result.stdout)["head"]["rows"]
    everything = ds.dataset(demo_output / "alerts").to_table().sort_by("window_start")
    assert len(rows) == 3
    assert [r["window_start"] for r in rows] == [
        str(v) for v in everything["window_start"].to_pylist()[:3]
    ]
    text = eventlake("inspect", str(demo_output), "--table", "alerts", "--head", "2")
    assert "first 2 rows of alerts:" in text.stdout


def test_a_directory_without_tables_or_an_unknown_table_is_a_usage_error(
    demo_output: Path, tmp_path: Path
) -> None:
    empty = eventlake("inspect", str(tmp_path))
    assert empty.returncode == 2 and "holds no output tables" in empty.stderr
    unknown = eventlake("inspect", str(demo_output), "--table", "nope")
    assert unknown.returncode == 2 and "no table 'nope'" in unknown.stderr


def test_inspect_works_while_a_flow_writes(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic()
    start = datetime(2024, 5, 1, 8, tzinfo=UTC)
    produce_events(broker.target, topic, MonitoringGenerator(seed=8, start=start), 20_000)
    out = tmp_path / "out"
    with writing_flow(broker.target, topic, tmp_path) as flow:
        for _ in range(3):
            result = eventlake("inspect", str(out), "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["tables"]
        assert flow.poll() is None, "the flow stopped while being inspected"
