"""Invalid `eventlake aggregate` options and pipeline files: exit 2 before anything starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events

BASE = ["aggregate", "--topic", "t", "--time-field", "ts", "--key", "service"]
NO_BROKER = ["--brokers", "127.0.0.1:1"]  # never contacted: options fail first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--window", "1m", "--agg", "median"], "unknown aggregation 'median'"),
        (["--window", "1x"], "invalid duration '1x'"),
        (["--window", "1m", "--slide", "2m"], "--slide must not be larger than --window"),
        (["--window", "1m", "--slide", "30s", "--session-gap", "5m"], "not both"),
        (["--window", "1m", "--value", "service"], "both a --key and a --value"),
        (["--window", "1m", "--filter", "status >"], "--filter 'status >'"),
        (["--window", "1m", "--agg", "mean"], "'mean' needs --value"),
        (["--window", "1m", "--value", "v", "--agg", "p100"], "between p0 and p100"),
        (["--window", "1m", "--agg", "topk:x:none"], "K must be a positive whole number"),
        (["--value", "v"], "--window is required"),
        (["--window", "1m", "--time-format", "rfc"], "'rfc' is not one of"),
        (["--window", "1m", "--filter", "service > 3"], "field 'service' is read as text"),
        (["--window", "1m", "--final"], "--final closes every window at the end of a bounded"),
        (["--window", "1m", "--max-session", "1d"], "--max-session limits session windows"),
        (["--session-gap", "1m", "--max-session", "9999999d"], "at most 3650000d"),
        (["--window", "1m", "--max-open-windows", "0"], "'0' is not a positive whole number"),
    ],
)
def test_an_invalid_option_names_the_fix(options: list[str], message: str) -> None:
    result = eventlake(*BASE, *options, *NO_BROKER)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_field_name_that_is_not_a_path_is_refused() -> None:
    result = eventlake(*BASE[:4], "time field", "--key", "a", "--window", "1m", *NO_BROKER)
    assert result.returncode == 2 and "'time field' is not a field name" in result.stderr


def test_an_output_table_with_other_columns_is_refused(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic()
    start = datetime(2024, 5, 1, tzinfo=UTC)
    produce_events(broker.target, topic, MonitoringGenerator(seed=1, start=start), 2_000)
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--window", "1m", "--out", str(tmp_path), "--bounded",
               "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    assert eventlake(*command).returncode == 0

    other = eventlake(*command, "--value", "latency_ms", "--agg", "count,mean")
    assert other.returncode == 2
    assert "holds a table with other columns" in other.stderr
    assert "mean_latency_ms" in other.stderr
    same = eventlake(*command)
    assert same.returncode == 2 and "already holds" in same.stderr, "a rerun would double rows"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topic = ", "not valid TOML"),
        ('topic = "t"\ntime_field = "ts"\n', "at least one [[aggregation]]"),
        ('topic = "t"\ntime_field = "ts"\ncolour = 1\n[[aggregation]]\nkey = ["a"]\n'
         'window = "1m"\n', "unknown setting 'colour'"),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["a"]\nwindow = "1m"\n'
         '[[aggregation]]\nkey = ["b"]\nwindow = "1m"\n', 'needs a table = "NAME"'),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["a"]\nwindow = "soon"\n',
         "window: invalid duration 'soon'"),
        ('time_field = "ts"\n[[aggregation]]\nkey = ["a"]\nwindow = "1m"\n',
         'topic = "…" is required'),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\ntable = "by_status"\n'
         'key = ["status"]\nwindow = "1m"\n[[aggregation]]\ntable = "errors"\n'
         'key = ["service"]\nwindow = "1m"\nfilter = "status >= 500"\n',
         "field 'status' is read as text (a key, a text comparison, distinct or topk) by "
         "table by_status and as a number (a value or a numeric comparison) by table errors"),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["date"]\nwindow = "1m"\n',
         "table windows: column 'date' has the name of the date=… directories"),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["read_at"]\nwindow = "1m"\n',
         "table late: the events' field 'read_at' has the name of a column eventlake adds"),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nvalue = ["watermark"]\n'
         'agg = ["max"]\nkey = ["a"]\nwindow = "1m"\n',
         "table late: the events' field 'watermark' has the name of a column eventlake adds"),
        ('topic = "t"\ntime_field = "ts"\n[[aggregation]]\nkey = ["a"]\nwindow = "1m"\n'
         '[kafka]\n"no.such.setting" = "1"\n', "no.such.setting"),
    ],
)  # fmt: skip
def test_validate_names_the_file_and_the_mistake(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    result = eventlake("validate", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("../escaped", "is not a table name"),
        ("/tmp/abs", "is not a table name"),
        (".hidden", "is not a table name"),
        ("", "is not a table name"),
        ("a/b", "is not a table name"),
        ("late", "is reserved"),
        ("gaps", "is reserved"),
    ],
)
def test_a_table_name_that_would_leave_or_clash_in_the_output_is_refused(
    tmp_path: Path, table: str, message: str
) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(
        f'topic = "t"\ntime_field = "ts"\n[[aggregation]]\ntable = "{table}"\n'
        'key = ["a"]\nwindow = "1m"\n'
    )
    result = eventlake("validate", str(path))
    assert result.returncode == 2
    assert f"table {table!r} {message}" in result.stderr


def test_events_beyond_the_lateness_are_late_rows_and_nothing_is_lost(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    start = datetime(2024, 5, 1, 12, tzinfo=UTC)
    produce_events(broker.target, topic, MonitoringGenerator(seed=2, start=start), 6_000)
    stale = MonitoringGenerator(seed=3, start=start - timedelta(minutes=10))
    produce_events(broker.target, topic, stale, 300)  # after newer events: late

    done = eventlake("aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
                     "--window", "1m", "--out", str(tmp_path), "--bounded", "--batch-size", "500",
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert done.returncode == 0, done.stderr

    windows = ds.dataset(tmp_path / "windows").to_table().to_pylist()
    late = ds.dataset(tmp_path / "late").count_rows()
    dead = ds.dataset(tmp_path / "dead_letter").count_rows()
    keys = [(row["service"], row["window_start"]) for row in windows]
    assert len(keys) == len(set(keys)), "a (key, window) was emitted twice"
    assert late > 0
    assert sum(row["count"] for row in windows) + late + dead == 6_300


def test_zero_lateness_suits_an_in_order_topic(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """As Flink accepts zero out-of-orderness: in-order events, none late, all counted."""
    topic = new_topic(partitions=1)
    generator = MonitoringGenerator(seed=2, start=datetime(2024, 5, 1, tzinfo=UTC), disorder=0)
    produce_events(broker.target, topic, generator, 3_000)
    done = eventlake("aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
                     "--window", "10s", "--lateness", "0s", "--out", str(tmp_path), "--bounded",
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert done.returncode == 0, done.stderr
    windows = ds.dataset(tmp_path / "windows").to_table()
    assert sum(windows["count"].to_pylist()) == 3_000
    assert ds.dataset(tmp_path / "late").count_rows() == 0
    path = tmp_path / "pipeline.toml"
    path.write_text('topic = "t"\ntime_field = "ts"\nlateness = "0s"\n[[aggregation]]\n'
                    'key = ["a"]\nwindow = "1m"\n')  # fmt: skip
    assert eventlake("validate", str(path)).returncode == 0
