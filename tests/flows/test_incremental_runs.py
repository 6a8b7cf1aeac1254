"""Bounded reruns, an unbounded run stopped by SIGTERM and more bounded reruns on one
recovery directory: every event is counted once, or is late; no window appears twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds

from tests.conftest import Broker, NewTopic
from tests.helpers import READ_TIMEOUT_S, cli_process, eventlake, produce_raw

T0 = datetime(2024, 5, 1, tzinfo=UTC)
PER_RUN = 3_000
STRAGGLERS = 20
SPAN = timedelta(minutes=10)
Window = tuple[str, datetime]


def _batch(run: int) -> list[dict[str, object]]:
    """Events of run ``run`` over its own 10 minutes, and stragglers into the last
    minute of the run before."""
    start = T0 + run * SPAN
    events = [(start + timedelta(milliseconds=200 * i), f"s{i % 5}") for i in range(PER_RUN)]
    if run:
        late = start - timedelta(seconds=10)
        events += [(late, f"s{i % 5}") for i in range(STRAGGLERS)]
    return [{"ts": ts.isoformat(), "service": service} for ts, service in events]


def _oracle(events: list[dict[str, object]]) -> Counter[Window]:
    """Events per (service, minute), in batch."""
    return Counter(
        (str(e["service"]), datetime.fromisoformat(str(e["ts"])).replace(second=0, microsecond=0))
        for e in events
    )


def _table(out: Path, name: str) -> list[dict[str, object]]:
    return ds.dataset(out / name, partitioning="hive").to_table().to_pylist()


def _counted(out: Path) -> int:
    try:
        return sum(int(str(row["count"])) for row in _table(out, "windows"))
    except (FileNotFoundError, OSError):
        return 0


def test_reruns_and_a_stopped_unbounded_run_count_every_event_once(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out, produced = new_topic(partitions=3), tmp_path / "out", []
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--window", "1m", "--agg", "count", "--out", str(out),
               "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.2s",
               "--file-max-age", "0.1s", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    totals = []
    for run, mode in enumerate(["--bounded", "--bounded", "--unbounded", "--bounded"]):
        batch = _batch(run)
        produce_raw(broker.target, topic, [json.dumps(event).encode() for event in batch])
        produced += batch
        if mode == "--bounded":
            done = eventlake(*command, mode)
            assert done.returncode == 0, done.stderr
        else:
            _run_then_stop(command, out, before=totals[-1])
        totals.append(_counted(out))

    windows = Counter((str(row["service"]), row["window_start"]) for row in _table(out, "windows"))
    assert max(windows.values()) == 1, "a window was emitted twice"
    counts = {(str(r["service"]), r["window_start"]): r["count"] for r in _table(out, "windows")}
    late = Counter((str(r["service"]), r["window_start"]) for r in _table(out, "late"))
    oracle = _oracle(produced)
    assert totals[0] < totals[1] < totals[3], "a rerun counted nothing new"
    assert sum(late.values()) >= STRAGGLERS, "stragglers into closed windows are late"
    for window, expected in oracle.items():
        assert counts.get(window, 0) + late.get(window, 0) == expected, window
    assert set(counts) | set(late) <= set(oracle)


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
