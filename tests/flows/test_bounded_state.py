"""Bounded state: a pipeline file's maximum session length against the oracle (bytewax.testing),
and `eventlake aggregate --max-open-windows` stopping a run that holds more, losing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from bytewax.testing import run_main

from flows.pipelines.files import load_pipeline
from flows.pipelines.flow import WINDOWS_TABLE, pipeline_flow
from flows.runtime.settings import FlowSettings
from sources.target import KafkaTarget
from tests.conftest import Broker, NewTopic
from tests.flows import oracle
from tests.flows.testing_io import memory_io
from tests.helpers import eventlake, produce_raw

START = datetime(2024, 5, 1, 9, 10, tzinfo=UTC)
GAP_US, MAX_US = 30 * 60 * oracle.MICROS_PER_S, 2 * 3600 * oracle.MICROS_PER_S
PIPELINE = """
topic = "visits"
time_field = "ts"

[[aggregation]]
key = ["user"]
session_gap = "30m"
max_session = "2h"
"""


def _visits() -> list[dict[str, Any]]:
    """Two users active every 29 minutes for ten hours, one from 9:10, one from 10:40, in
    time order."""
    visits = [
        {"ts": (START + timedelta(minutes=offset + 29 * step)).isoformat(), "user": user}
        for user, offset in (("ann", 0), ("bob", 90))
        for step in range(21)
    ]
    return sorted(visits, key=lambda visit: visit["ts"])


def test_a_pipeline_files_max_session_cuts_sessions_as_the_oracle_says(tmp_path: Path) -> None:
    (tmp_path / "visits.toml").write_text(PIPELINE)
    visits = _visits()
    values = [json.dumps(visit).encode() for visit in visits]
    settings = FlowSettings(target=KafkaTarget("unused:9092"), topic="visits",
                            out=tmp_path / "out", bounded=True)  # fmt: skip
    flow = pipeline_flow(load_pipeline(tmp_path / "visits.toml"))
    run_main(flow.build(settings, io=memory_io([values[::2], values[1::2]], batch_size=5)))
    events = [{**visit, "_us": oracle.to_micros(visit["ts"])} for visit in visits]
    expected = oracle.sessions(events, "user", GAP_US, MAX_US)
    rows = ds.dataset(tmp_path / "out" / WINDOWS_TABLE).to_table().to_pylist()
    got = oracle.by_key(rows, lambda row: (row["user"], oracle.micros(row["window_start"])))
    oracle.assert_capped_sessions(got, expected, GAP_US, MAX_US)
    assert len(expected) == 12  # 9:10-19:00 and 10:40-20:30 in 2-hour cuts


def test_more_open_windows_than_allowed_stop_the_run_and_a_higher_limit_resumes_it(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """Exit 1 naming the flag; nothing is lost: the rerun with room writes every window.
    (Rows a shard holds before it groups them into windows are not counted; they are
    bounded on their own, :data:`~flows.engine.shard.HELD_MAX`.)"""
    topic = new_topic()
    users = [{"ts": START.isoformat(), "user": f"user-{index}"} for index in range(60)]
    produce_raw(broker.target, topic, [json.dumps(user).encode() for user in users])
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "user",
               "--window", "1h", "--out", str(tmp_path / "out"), "--recovery-dir",
               str(tmp_path / "ckpt"), "--bounded",
               "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    stopped = eventlake(*command, "--max-open-windows", "20")  # keeps all 60 open at its end
    assert stopped.returncode == 1, stopped.stderr
    assert "more than --max-open-windows 20 allows" in stopped.stderr
    assert "loses nothing" in stopped.stderr

    resumed = eventlake(*command, "--final", "--max-open-windows", "100")
    assert resumed.returncode == 0, resumed.stderr
    rows = ds.dataset(tmp_path / "out" / WINDOWS_TABLE).to_table().to_pylist()
    events = [{**user, "_us": oracle.to_micros(user["ts"])} for user in users]
    expected = oracle.tumbling(events, ("user",), 3600 * oracle.MICROS_PER_S)
    got = oracle.by_key(rows, lambda row: (row["user"], oracle.micros(row["window_start"])))
    assert {key: row["count"] for key, row in got.items()} == {
        key: len(members) for key, members in expected.items()
    }
