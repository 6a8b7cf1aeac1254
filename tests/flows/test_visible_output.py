"""Readers see only what stays: a reader that watches unbounded runs through crashes
never sees a file vanish or change, and every row it saw is in the final output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sinks.parquet_files import visible_files
from tests.conftest import Broker, NewTopic
from tests.helpers import READ_TIMEOUT_S, cli_process, produce_raw

T0 = datetime(2024, 5, 1, tzinfo=UTC)
PER_ROUND = 3_000
PER_MINUTE = 300
SPAN = timedelta(minutes=10)
Row = tuple[Any, ...]


class Watcher(threading.Thread):
    """Lists and reads the table over and over, as a dashboard would, and records each
    file it read (its inode and rows) and each file that vanished before it was read."""

    def __init__(self, table_dir: Path) -> None:
        super().__init__()
        self.table_dir = table_dir
        self.seen: dict[str, tuple[int, list[Row]]] = {}
        self.vanished: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            listed = ds.dataset(self.table_dir).files if self.table_dir.exists() else []
            for path in listed:
                if path not in self.seen:
                    self._read(path)
            time.sleep(0.02)

    def _read(self, path: str) -> None:
        try:
            inode = Path(path).stat().st_ino
            rows = pq.read_table(path).to_pylist()
        except FileNotFoundError:
            self.vanished.append(path)
            return
        self.seen[path] = (inode, [_row(row) for row in rows])


def _row(row: dict[str, Any]) -> Row:
    return (row["service"], row["window_start"], row["count"])


def _round(number: int) -> list[bytes]:
    start = T0 + number * SPAN
    step = timedelta(minutes=1) / PER_MINUTE
    events = ({"ts": (start + step * i).isoformat(), "service": f"s{i % 5}"}
              for i in range(PER_ROUND))  # fmt: skip
    return [json.dumps(event).encode() for event in events]


def _final_rows(table_dir: Path) -> list[Row]:
    return [_row(row) for row in ds.dataset(table_dir).to_table().to_pylist()]


def _counted(table_dir: Path) -> int:
    rows = _final_rows(table_dir) if table_dir.exists() else []
    return sum(count for _, _, count in rows)


def test_a_reader_of_crashing_unbounded_runs_sees_only_rows_that_stay(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out, recovery = new_topic(partitions=3), tmp_path / "out", tmp_path / "recovery"
    table_dir = out / "windows"
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--window", "1m", "--agg", "count", "--out", str(out), "--unbounded",
               "--recovery-dir", str(recovery), "--snapshot-interval", "0.2s",
               "--file-max-age", "0.1s", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    watcher = Watcher(table_dir)
    watcher.start()
    try:
        produce_raw(broker.target, topic, _round(0))
        # Dies right after writing its first file: before that file's snapshot is durable.
        fault = {**os.environ, "EVENTLAKE_FAULT": "after_rename:1"}
        with cli_process(*command, stderr=subprocess.PIPE, env=fault) as crashing:
            _, stderr = crashing.communicate(timeout=READ_TIMEOUT_S)
        assert crashing.returncode == -signal.SIGKILL, stderr
        time.sleep(0.5)  # the reader looks at what the crash left

        produce_raw(broker.target, topic, _round(1))
        with cli_process(*command, stderr=subprocess.PIPE) as killed:
            _wait_for_count(table_dir, PER_ROUND + 600, killed)
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=READ_TIMEOUT_S)
        time.sleep(0.5)

        produce_raw(broker.target, topic, _round(2))
        with cli_process(*command, stderr=subprocess.PIPE) as stopped:
            _wait_for_count(table_dir, 3 * PER_ROUND - PER_MINUTE, stopped)  # the last is open
            stopped.send_signal(signal.SIGTERM)
            _, stderr = stopped.communicate(timeout=READ_TIMEOUT_S)
        assert stopped.returncode == 0, stderr
    finally:
        watcher.stop.set()
        watcher.join()

    final = _final_rows(table_dir)
    assert watcher.vanished == [], "a file the reader listed was deleted"
    assert len(watcher.seen) >= 2, "the reader saw the table grow"
    for path, (inode, _) in watcher.seen.items():
        assert Path(path).stat().st_ino == inode, f"{path} was rewritten after a reader saw it"
    seen_rows = Counter(row for _, rows in watcher.seen.values() for row in rows)
    assert not seen_rows - Counter(final), "a row the reader saw is not in the final output"
    windows = Counter((service, start) for service, start, _ in final)
    assert max(windows.values()) == 1, "a window was emitted twice"
    assert _counted(table_dir) == 3 * PER_ROUND - PER_MINUTE, "every event counted once"


def _wait_for_count(table_dir: Path, at_least: int, flow: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while _counted(table_dir) < at_least:
        assert flow.poll() is None, "the unbounded run stopped by itself"
        assert time.monotonic() < deadline, f"fewer than {at_least} events counted"
        time.sleep(0.1)


def test_a_dead_letter_appears_while_an_unbounded_run_goes_on(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    """Its row goes to the sink partition of its directory, which no batch of a
    two-partition topic feeds: that partition must still roll and publish on time."""
    topic, out = new_topic(partitions=2), tmp_path / "out"
    command = ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
               "--window", "1m", "--agg", "count", "--out", str(out), "--unbounded",
               "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.2s",
               "--file-max-age", "0.1s", "--brokers", broker.target.bootstrap_servers]  # fmt: skip
    produce_raw(broker.target, topic, [b"not json", *_round(0)[:10]])
    with cli_process(*command, stderr=subprocess.PIPE) as flow:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not visible_files(out / "dead_letter"):
            assert flow.poll() is None, "the unbounded run stopped by itself"
            assert time.monotonic() < deadline, "the dead letter never became visible"
            time.sleep(0.1)
        assert flow.poll() is None
    assert ds.dataset(out / "dead_letter").count_rows() == 1
