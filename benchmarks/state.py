"""What a large state costs: N distinct keys in one open window, checkpointed.

``python -m benchmarks.state`` produces ``--keys`` events (default 200,000), each of
its own user, within one hour of event time, on the embedded broker, and runs
``eventlake aggregate --key user --window 1h --agg count,sum`` over them unbounded
with ``--snapshot-interval 2s``, so every window stays open. Once it has read them
all and settled, it leaves the run idle for ``--idle`` seconds and measures what the
state costs meanwhile: the run's CPU, the checkpoints and bytes it wrote, how the
recovery directory grew, the bytes per key of the open windows in the checkpoint and
the peak memory; then the time SIGTERM takes to stop it. ``--session`` runs 30-minute
sessions instead of windows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer

from sources.broker import EmbeddedBroker
from sources.target import KafkaTarget
from sources.topics import TopicSpec

TOPIC, PARTITIONS = "users", 8
START = datetime(2024, 5, 1, 12, tzinfo=UTC)
SNAPSHOT_INTERVAL = "2s"
SETTLE_S = 40.0
"""Seconds between the last event read and the idle measurement: the last data epochs are
snapshotted, and the snapshots they superseded cleaned up (``--backup-interval`` 30s)."""
SHARDS_STEP = "aggregate.windows_windows"
"""The prefix of the step ids that hold the shards' state."""


def _events(keys: int) -> Iterator[bytes]:
    """One event per user, spread over 50 minutes of event time, in time order."""
    step_us = 50 * 60 * 1_000_000 // keys
    for index in range(keys):
        ts = START + timedelta(microseconds=index * step_us)
        yield json.dumps({"ts": ts.isoformat(), "user": f"user-{index:07d}", "v": 1.0}).encode()


def _produce(target: KafkaTarget, keys: int) -> None:
    producer = Producer({**target.client_config(), "compression.type": "lz4", "linger.ms": 50})
    for value in _events(keys):
        while True:
            try:
                producer.produce(TOPIC, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _command(target: KafkaTarget, work: Path, session: bool) -> list[str]:
    window = ["--session-gap", "30m"] if session else ["--window", "1h"]
    return [
        sys.executable, "-m", "flows.cli", "aggregate", "--topic", TOPIC, "--time-field",
        "ts", "--key", "user", "--value", "v", "--agg", "count,sum", *window,
        "--unbounded", "--recovery-dir", str(work / "ckpt"), "--snapshot-interval",
        SNAPSHOT_INTERVAL, "--out", str(work / "out"), "--brokers",
        target.bootstrap_servers, "--status-interval", "1s", "--idle-timeout", "1h",
    ]  # fmt: skip


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(pid: int) -> int:
    """Bytes ``pid`` has had written to storage so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _peak_rss_mib(pid: int) -> float:
    """The peak resident memory of ``pid`` so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*") if path.is_file())


def _epochs(directory: Path) -> set[int]:
    """The epochs in which any step was snapshotted (those not cleaned up yet)."""
    epochs: set[int] = set()
    for part in directory.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
            epochs |= {epoch for (epoch,) in db.execute("SELECT DISTINCT snap_epoch FROM snaps")}
    return epochs


def _shard_bytes(directory: Path) -> tuple[int, int]:
    """Bytes of the shards' newest snapshots, and how many snapshots of them there are."""
    total, count = 0, 0
    for part in directory.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT length(ser_change), snap_epoch, state_key FROM snaps WHERE step_id "
                "LIKE ? ORDER BY snap_epoch",
                (f"{SHARDS_STEP}%",),
            ).fetchall()
            count += len(rows)
            newest = {key: size for size, _, key in rows}
            total += sum(size or 0 for size in newest.values())
    return total, count


def _wait_for(process: subprocess.Popen[str], keys: int) -> None:
    """Until the run's status line says it read every event."""
    assert process.stderr is not None
    for line in process.stderr:
        if f"{keys:,} events" in line or f"{keys:,}/" in line:
            return
    raise SystemExit(f"the run ended before reading {keys:,} events (exit {process.wait()})")


def measure(keys: int, idle_s: float, session: bool) -> dict[str, float]:
    """Run the scenario once; its figures."""
    with (
        tempfile.TemporaryDirectory(prefix="eventlake-state-") as temp,
        EmbeddedBroker(topics=[TopicSpec(TOPIC, PARTITIONS)]) as bootstrap,
    ):
        work = Path(temp)
        target = KafkaTarget(bootstrap)
        _produce(target, keys)
        started = time.monotonic()
        process = subprocess.Popen(
            _command(target, work, session), stderr=subprocess.PIPE, text=True
        )
        _wait_for(process, keys)
        figures = {"keys": keys, "read_s": round(time.monotonic() - started, 1)}
        time.sleep(SETTLE_S)
        figures |= _idle(process.pid, work / "ckpt", idle_s, keys)
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=600)
        return {
            **figures,
            "sigterm_s": round(time.monotonic() - stopping, 1),
            "exit_code": process.returncode,
        }


def _idle(pid: int, ckpt: Path, idle_s: float, keys: int) -> dict[str, float]:
    """What run ``pid`` costs while idle for ``idle_s``, and what its checkpoint in
    ``ckpt`` holds of its ``keys`` then."""
    cpu, written, size = _cpu_s(pid), _written(pid), _size(ckpt)
    newest = max(_epochs(ckpt))
    time.sleep(idle_s)
    state_bytes, snapshots = _shard_bytes(ckpt)
    return {
        "idle_s": idle_s,
        "idle_cpu_percent": round(100 * (_cpu_s(pid) - cpu) / idle_s, 1),
        "idle_checkpoints": len([epoch for epoch in _epochs(ckpt) if epoch > newest]),
        "idle_written_mb": round((_written(pid) - written) / 2**20, 1),
        "recovery_dir_growth_idle_mb": round((_size(ckpt) - size) / 2**20, 1),
        "shard_snapshot_bytes_per_key": round(state_bytes / keys, 1),
        "shard_snapshots_stored": snapshots,
        "peak_rss_mib": round(_peak_rss_mib(pid)),
    }


def main() -> None:
    """Parse the options, run the scenario and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument("--session", action="store_true", help="30-minute sessions")
    options = parser.parse_args()
    print(json.dumps(measure(options.keys, options.idle, options.session), indent=2))


if __name__ == "__main__":
    main()
