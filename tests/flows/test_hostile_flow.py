"""Hostile messages produced into a running `eventlake aggregate`: it never stops, a
SIGKILL and resume finish too, and every message is a counted row or a dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_raw, run_with_kills
from tests.hostile_corpus import HOSTILE

VALID_EVENTS = 12_000
START = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _valid(index: int) -> bytes:
    time = START + timedelta(milliseconds=50 * index)
    event = {"ts": time.isoformat(), "service": f"s{index % 7}", "latency_ms": index % 500}
    return json.dumps(event).encode()


def _messages() -> list[bytes | None]:
    """Valid events with the whole corpus spread through them, twice."""
    valid = [_valid(index) for index in range(VALID_EVENTS)]
    hostile = [value for value, _ in HOSTILE.values()] * 2
    step = VALID_EVENTS // len(hostile)
    for position, value in enumerate(hostile):
        valid.insert(position * (step + 1), value)
    return valid


def _table(out: Path, name: str) -> pa.Table:
    return ds.dataset(out / name, partitioning="hive").to_table()


def test_hostile_messages_in_a_killed_and_resumed_flow_are_all_accounted_for(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, messages = new_topic(partitions=4), _messages()
    produce_raw(broker.target, topic, messages)
    out = tmp_path / "out"
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--value", "latency_ms", "--window", "1m", "--agg", "count,sum,mean,max,p95",
               "--bounded", "--final", "--out", str(out),
               "--recovery-dir", str(tmp_path / "recovery"),
               "--snapshot-interval", "0.1s", "--batch-size", "100", "--file-rows", "50",
               "--brokers", broker.target.bootstrap_servers]  # fmt: skip

    run_with_kills(command, kills=1, seed=7)
    resumed = eventlake(*command)

    assert resumed.returncode == 0, resumed.stderr
    windows, late, dead = (_table(out, name) for name in ("windows", "late", "dead_letter"))
    expected_dead = 2 * sum(outcome == "dead" for _, outcome in HOSTILE.values())
    assert dead.num_rows == expected_dead
    assert dead.group_by(["partition", "offset"]).aggregate([]).num_rows == dead.num_rows
    assert pc.sum(windows["count"]).as_py() + late.num_rows + dead.num_rows == len(messages)
    for table in (windows, late):
        for field in table.schema:
            if pa.types.is_floating(field.type):
                assert pc.all(pc.is_finite(table[field.name])).as_py() is not False, field.name
    invalid = sum(pc.sum(table["invalid_values"]).as_py() or 0 for table in (windows, late))
    assert invalid == 2 * sum(name.startswith("value ") for name in HOSTILE)
    for table in (windows, late, dead):  # every string readable as UTF-8, late rows included
        table.validate(full=True)
    assert late.num_rows > 0 and set(late["service"].to_pylist()) & {"\U0001f600", "\x00"}


def test_hostile_messages_in_the_monitoring_flow_are_rows_or_dead_letters_never_a_crash(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """The fixed-schema decoder: every table readable, each message counted once."""
    topic, messages = new_topic(partitions=2), _messages()
    produce_raw(broker.target, topic, messages)
    out = tmp_path / "out"
    done = eventlake("run", "monitoring", "--bounded", "--topic", topic, "--out", str(out),
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics, late, dead = (_table(out, name) for name in ("service_metrics", "late", "dead_letter"))
    for table in (metrics, late, dead):
        table.validate(full=True)
    assert pc.sum(metrics["count"]).as_py() + late.num_rows + dead.num_rows == len(messages)
    late_services = late["service"].to_pylist() if late.num_rows else []  # none may be late
    assert {"\U0001f600", "\x00"} <= set(metrics["service"].to_pylist() + late_services)
