"""Bounded reruns on one recovery directory, through the CLI on the embedded broker: six
hourly reruns write what one run writes (windows and sessions kept open between them, none
late); with stragglers and a SIGTERMed unbounded run in between, every event is counted once
or is late, and no window appears twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from tests.conftest import Broker, NewTopic
from tests.flows import oracle
from tests.helpers import READ_TIMEOUT_S, cli_process, eventlake, produce_raw, read_topic

T0 = datetime(2024, 5, 1, tzinfo=UTC)
PER_RUN = 3_000
STRAGGLERS = 20
SPAN = timedelta(minutes=10)
Window = tuple[str, datetime]
CHUNKS, PER_CHUNK = 6, 6_000
"""Six chunks of 50 minutes, one event every 0.5 s."""
PIPELINE = """
topic = "{topic}"
time_field = "ts"

[[aggregation]]
table = "hourly"
key = ["service"]
value = ["v"]
window = "1h"
agg = ["count", "sum"]

[[aggregation]]
table = "sessions"
key = ["user"]
session_gap = "10m"
"""


def _chunk(number: int) -> list[bytes]:
    """Events of chunk ``number``: in time order; each user is active for 25 s out of every
    16 minutes and 40 s, so sessions of 10 minutes' gap open and close all along."""
    events = []
    for i in range(number * PER_CHUNK, (number + 1) * PER_CHUNK):
        ts = (T0 + timedelta(seconds=i / 2)).isoformat()
        events.append({"ts": ts, "service": f"s{i % 5}", "user": f"u{i // 50 % 40}", "v": i % 13})
    return [json.dumps(event).encode() for event in events]


def _rows(out: Path, table: str) -> list[dict[str, Any]]:
    try:
        return ds.dataset(out / table, partitioning="hive").to_table().to_pylist()
    except (FileNotFoundError, OSError):
        return []


def _written(out: Path) -> dict[str, list[str]]:
    """Every row of both tables, comparable."""
    return {table: sorted(map(str, _rows(out, table))) for table in ("hourly", "sessions")}


def test_six_hourly_reruns_write_what_one_run_writes_and_nothing_is_late(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    cut, whole = new_topic(partitions=4), new_topic(partitions=4)
    pipelines = {}
    for topic in (cut, whole):
        pipelines[topic] = tmp_path / f"{topic}.toml"
        pipelines[topic].write_text(PIPELINE.format(topic=topic))

    def run(topic: str, *extra: str) -> str:
        done = eventlake("run", str(pipelines[topic]), "--bounded", "--out",
                         str(tmp_path / topic), "--recovery-dir", str(tmp_path / f"{topic}-rec"),
                         "--brokers", broker.target.bootstrap_servers, *extra)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr

    for number in range(CHUNKS):
        produce_raw(broker.target, cut, _chunk(number))
        said = run(cut)
        assert "still open, kept for the next run" in said
    produce_raw(broker.target, whole, [v for n in range(CHUNKS) for v in _chunk(n)])
    run(whole)

    assert _written(tmp_path / cut) == _written(tmp_path / whole)
    assert _written(tmp_path / cut)["hourly"] and _written(tmp_path / cut)["sessions"]
    assert "already complete" in run(cut)
    run(cut, "--final")
    run(whole, "--final")
    assert _written(tmp_path / cut) == _written(tmp_path / whole)
    for topic in (cut, whole):
        assert _rows(tmp_path / topic, "late") == []
        _assert_oracle(read_topic(broker.target, topic), tmp_path / topic)


def _assert_oracle(messages: list[tuple[bytes | None, bytes | None]], out: Path) -> None:
    """Counts per (service, hour) and per session, in batch."""
    events = oracle.parse_events(messages, ("service", "user"))
    hourly = oracle.tumbling(events, ("service",), 3_600 * oracle.MICROS_PER_S)
    rows = oracle.by_key(_rows(out, "hourly"),
                         lambda r: (r["service"], oracle.micros(r["window_start"])))  # fmt: skip
    assert {key: row["count"] for key, row in rows.items()} == {
        key: len(members) for key, members in hourly.items()
    }
    sessions = oracle.sessions(events, "user", 600 * oracle.MICROS_PER_S)
    rows = oracle.by_key(_rows(out, "sessions"),
                         lambda r: (r["user"], oracle.micros(r["window_start"])))  # fmt: skip
    assert {key: row["count"] for key, row in rows.items()} == {
        key: len(members) for key, members in sessions.items()
    }


def _batch(run: int) -> list[dict[str, object]]:
    """Events of run ``run`` over its own 10 minutes, and stragglers into a minute that
    the run before had closed."""
    start = T0 + run * SPAN
    events = [(start + timedelta(milliseconds=200 * i), f"s{i % 5}") for i in range(PER_RUN)]
    if run:
        late = start - timedelta(seconds=90)
        events += [(late, f"s{i % 5}") for i in range(STRAGGLERS)]
    return [{"ts": ts.isoformat(), "service": service} for ts, service in events]


def _oracle(events: list[dict[str, object]]) -> Counter[Window]:
    """Events per (service, minute), in batch."""
    return Counter(
        (str(e["service"]), datetime.fromisoformat(str(e["ts"])).replace(second=0, microsecond=0))
        for e in events
    )


def _counted(out: Path) -> int:
    return sum(int(str(row["count"])) for row in _rows(out, "windows"))


def test_reruns_and_a_stopped_unbounded_run_count_every_event_once(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out, produced = new_topic(partitions=3), tmp_path / "out", []
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--window", "1m", "--agg", "count", "--out", str(out),
               "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.2s",
               "--file-max-age", "0.1s", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    totals = []
    modes = [["--bounded"], ["--bounded"], ["--unbounded"], ["--bounded", "--final"]]
    for run, mode in enumerate(modes):
        batch = _batch(run)
        produce_raw(broker.target, topic, [json.dumps(event).encode() for event in batch])
        produced += batch
        if mode == ["--unbounded"]:
            _run_then_stop(command, out, before=totals[-1])
        else:
            done = eventlake(*command, *mode)
            assert done.returncode == 0, done.stderr
        totals.append(_counted(out))

    windows = Counter((str(row["service"]), row["window_start"]) for row in _rows(out, "windows"))
    assert max(windows.values()) == 1, "a window was emitted twice"
    counts = {(str(r["service"]), r["window_start"]): r["count"] for r in _rows(out, "windows")}
    late = Counter((str(r["service"]), r["window_start"]) for r in _rows(out, "late"))
    expected = _oracle(produced)
    assert totals[0] < totals[1] < totals[3], "a rerun counted nothing new"
    # Stragglers into closed windows are late (some may still find theirs open when a
    # partition lags after the stopped run); nothing else is.
    assert STRAGGLERS <= sum(late.values()) <= STRAGGLERS * (len(modes) - 1)
    for window, count in expected.items():
        assert counts.get(window, 0) + late.get(window, 0) == count, window
    assert set(counts) | set(late) <= set(expected)


def _run_then_stop(command: list[str], out: Path, before: int) -> None:
    """An unbounded run, stopped with SIGTERM once it has counted more than ``before``."""
    with cli_process(*command, "--unbounded", stderr=subprocess.PIPE) as flow:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while _counted(out) <= before:
            assert flow.poll() is None, "the unbounded run stopped by itself"
            assert time.monotonic() < deadline, "the unbounded run counted nothing new"
            time.sleep(0.1)
        flow.send_signal(signal.SIGTERM)
        _, stderr = flow.communicate(timeout=READ_TIMEOUT_S)
    assert flow.returncode == 0, stderr
