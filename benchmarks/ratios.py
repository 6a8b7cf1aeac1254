"""``make bench``: every way of running a flow against the consume ceilings of its topic.

One embedded broker holds four topics, each produced once: small monitoring
events (steady state, and three times as many to compare 1 and 2 processes), a
year of sensor readings (backfill) and shop events (the analytics flow's
sessions). Every row is one OS process over a whole topic,
start-up included, measured for wall time, CPU seconds (its children's too) and
peak RSS (summed over its processes). A topic has two ceilings, plain
confluent-kafka loops that read it and take each message's value: one message
per ``poll()`` (the loop of confluent-kafka's documentation, the ceiling the
performance issue set the targets against) and batches of 10,000 per
``consume()`` (the fastest a Python consumer reads). Every ratio is against the
ceilings of the same topic in the same run, so machine noise affects both sides
alike.

Each row is the fastest of :data:`REPEATS` runs. Printed as a table and written as
JSON to ``benchmarks/latest.json`` with the machine it ran on. ``--scale``
multiplies every event count (0.1 for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from confluent_kafka import Producer

from sources.broker import EmbeddedBroker
from sources.generators import AnalyticsGenerator, MonitoringGenerator
from sources.generators.base import EventGenerator
from sources.producer import PRODUCER_CONFIG
from sources.target import KafkaTarget
from sources.topics import TopicSpec

START = datetime(2024, 5, 1, tzinfo=UTC)
PARTITIONS = 32
STEADY_EVENTS = 1_000_000
SCALING_EVENTS = 3_000_000
BACKFILL_EVENTS = 336_776
SESSION_EVENTS = 500_000
STEADY = ["aggregate", "--key", "service", "--value", "latency_ms", "--window", "10s",
          "--agg", "count,mean,p50,p95,p99", "--time-field", "ts"]  # fmt: skip
BACKFILL = ["aggregate", "--key", "sensor", "--value", "value", "--window", "1h",
            "--agg", "count,mean,max,p95", "--time-field", "ts", "--lateness", "1h"]  # fmt: skip
RECOVERY = ["--snapshot-interval", "10s"]
REPEATS = 3
"""Runs of each row; the fastest counts (noise only ever slows a run down)."""
RESULTS = Path(__file__).with_name("latest.json")


@dataclass(frozen=True)
class Measured:
    """One row of the table."""

    scenario: str
    events: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    ratio: float
    """Events/s against the poll ceiling of the same topic."""
    batch_ratio: float
    """Events/s against the batch ceiling of the same topic."""
    note: str = ""

    @property
    def per_second(self) -> float:
        """Events per second of wall time."""
        return self.events / self.seconds


@dataclass(frozen=True)
class Topic:
    """A produced topic and its consume ceilings in events/s."""

    name: str
    events: int
    poll_ceiling: float = 0.0
    batch_ceiling: float = 0.0

    def measured(self, scenario: str, usage: Usage) -> Measured:
        """A row for ``scenario`` that read this topic with ``usage`` (wall and CPU
        seconds, peak RSS in MiB)."""
        seconds, cpu, rss = usage
        per_second = self.events / seconds
        return Measured(scenario, self.events, seconds, cpu, rss, per_second / self.poll_ceiling,
                        per_second / self.batch_ceiling)  # fmt: skip


def _produce(target: KafkaTarget, topic: str, values: Iterable[bytes]) -> int:
    """Send ``values`` keyed by their index (spread over every partition); how many."""
    config = {**target.client_config(), **PRODUCER_CONFIG, "compression.type": "zstd"}
    producer = Producer(config)  # compressed: the broker keeps 5 MiB per partition
    count = 0
    for count, value in enumerate(values, start=1):
        while True:
            try:
                producer.produce(topic, value, key=str(count).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return count


def _generated(kind: type[EventGenerator], count: int) -> Iterator[bytes]:
    events = kind(seed=1, start=START).events()
    return (json.dumps(event).encode() for event in islice(events, count))


Usage = tuple[float, float, float]
"""Wall seconds, CPU seconds (children included), peak RSS in MiB (of all processes)."""


def _fastest(
    command: Callable[[int], list[str]], environment: dict[str, str] | None = None
) -> Usage:
    """The :data:`Usage` of the fastest of :data:`REPEATS` runs of ``command(attempt)``."""
    return min(_measure(command(attempt), environment) for attempt in range(REPEATS))


def _measure(command: list[str], environment: dict[str, str] | None = None) -> Usage:
    """The :data:`Usage` of ``command`` run to success."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env={**os.environ, **(environment or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peaks: dict[int, int] = {}
    ended = threading.Event()
    watcher = threading.Thread(target=_watch_peaks, args=(process.pid, peaks, ended))
    watcher.start()
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    ended.set()
    watcher.join()
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return seconds, usage.ru_utime + usage.ru_stime, sum(peaks.values()) / 1024


def _watch_peaks(root: int, peaks: dict[int, int], ended: threading.Event) -> None:
    """Record the peak RSS (KiB, Linux's VmHWM) of process ``root`` and its children
    until ``ended``. (``ru_maxrss`` would count the benchmark's own memory, inherited
    at fork.)"""
    while not ended.is_set():
        for pid in [root, *_children(root)]:
            with contextlib.suppress(OSError, IndexError):
                status = Path(f"/proc/{pid}/status").read_text()
                peak = int(status.split("VmHWM:")[1].split()[0])
                peaks[pid] = max(peaks.get(pid, 0), peak)
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(child) for task in tasks
                for child in (task / "children").read_text().split()]  # fmt: skip
    return []


def _ceilings(bootstrap: str, name: str, events: int) -> tuple[Topic, list[Measured]]:
    """The topic with its consume ceilings measured, and their rows."""
    where = [bootstrap, name, str(PARTITIONS), str(events)]

    def ceiling(mode: str) -> Usage:
        return _fastest(lambda _: [sys.executable, "-m", "benchmarks.consume", mode, *where])

    poll, batch = ceiling("poll"), ceiling("batch")
    topic = Topic(name, events, events / poll[0], events / batch[0])
    rows = [
        topic.measured("  consume only, poll() per message", poll),
        topic.measured("  consume only, consume() 10,000 at a time", batch),
    ]
    return topic, rows


def _eventlake(
    bootstrap: str, topic: Topic, name: str, args: list[str], work: Path, checkpoints: bool = False
) -> Measured:
    """A row for ``eventlake ARGS --bounded`` over ``topic``; attempt N writes its tables
    under ``work/N/tables`` and, with ``checkpoints``, snapshots into ``work/N/recovery``
    every 10 s (``--final``, so that it closes every window as the run without does)."""

    def command(attempt: int) -> list[str]:
        where = work / str(attempt)
        recovery = ["--recovery-dir", str(where / "recovery"), *RECOVERY, "--final"]
        recovery = recovery if checkpoints else []
        return [sys.executable, "-m", "flows.cli", *args, *recovery, "--topic", topic.name,
                "--bounded", "--out", str(where / "tables"), "--brokers", bootstrap]  # fmt: skip

    return topic.measured(name, _fastest(command))


def _naive(bootstrap: str, topic: Topic) -> Measured:
    """A row for the flow bytewax's documentation suggests (benchmarks.naive_flow)."""
    command = [sys.executable, "-m", "bytewax.run", "benchmarks.naive_flow:flow"]
    environment = {"BENCH_BROKERS": bootstrap, "BENCH_TOPIC": topic.name}
    name = "  naive bytewax: KafkaSource, json.loads, fold_window"
    return topic.measured(name, _fastest(lambda _: command, environment))


def year_of_readings(count: int) -> Iterator[bytes]:
    """``count`` sensor readings spread over a year, three sensors, one in twenty null.

    Delays as devices have them: most readings arrive within seconds (log-normal,
    median 1 s), one in ten after minutes (exponential, mean 10 min), one in a
    hundred up to a day late (a device offline).
    """
    rnd = random.Random(1)
    spacing = timedelta(days=365) / count
    for i in range(count):
        draw = rnd.random()
        if draw < 0.01:
            delay_s = rnd.uniform(0, 86_400)
        elif draw < 0.11:
            delay_s = rnd.expovariate(1 / 600)
        else:
            delay_s = rnd.lognormvariate(0, 1)
        value = None if rnd.random() < 0.05 else rnd.gauss(20, 5)
        ts = (START + spacing * i - timedelta(seconds=delay_s)).isoformat()
        yield json.dumps({"ts": ts, "sensor": rnd.choice("abc"), "value": value}).encode()


Section = tuple[str, list[Measured]]


def _steady(bootstrap: str, events: int, work: Path) -> Section:
    """Steady state: the naive flow, and eventlake with 1 and 2 processes, with and
    without checkpoints."""
    _produce(KafkaTarget(bootstrap), "steady", _generated(MonitoringGenerator, events))
    topic, rows = _ceilings(bootstrap, "steady", events)
    rows.append(_naive(bootstrap, topic))
    for processes in (1, 2):
        args = [*STEADY, "--processes", str(processes)]
        name = f"  eventlake, {processes} process(es)"
        plain = _eventlake(bootstrap, topic, name, args, work / f"steady-{processes}")
        name = "    the same, checkpoints every 10s"
        checkpointed = _eventlake(bootstrap, topic, name, args, work / f"ckpt-{processes}", True)
        without = checkpointed.ratio / plain.ratio
        rows += [plain, _noted(checkpointed, f"{without:.2f}x without checkpoints")]
    return f"steady state: {events:,} monitoring events, 10s windows, 5 aggregations", rows


def _scaling(bootstrap: str, events: int, work: Path) -> Section:
    """The steady-state command on a longer topic with 1 and 2 processes, so that
    start-up (about 0.4 s of CPU per process) weighs less."""
    _produce(KafkaTarget(bootstrap), "scaling", _generated(MonitoringGenerator, events))
    topic, rows = _ceilings(bootstrap, "scaling", events)
    for processes in (1, 2):
        args = [*STEADY, "--processes", str(processes)]
        name = f"  eventlake, {processes} process(es)"
        rows.append(_eventlake(bootstrap, topic, name, args, work / f"scaling-{processes}"))
    rows[-1] = _noted(rows[-1], f"{rows[-1].per_second / rows[-2].per_second:.2f}x 1 process")
    return f"processes: {events:,} monitoring events, as above", rows


def _backfill(bootstrap: str, events: int, work: Path) -> Section:
    """A year of sensor readings into hourly windows, and the files written."""
    _produce(KafkaTarget(bootstrap), "year", year_of_readings(events))
    topic, rows = _ceilings(bootstrap, "year", events)
    backfill = _eventlake(bootstrap, topic, "  eventlake, 1 process", BACKFILL, work / "year")
    rows.append(_noted(backfill, f"wrote {_files(work / 'year' / '0' / 'tables' / 'windows')}"))
    return f"backfill: a year of readings ({events:,}) into 1h windows", rows


def _sessions(bootstrap: str, events: int, work: Path) -> Section:
    """The analytics flow: 30-minute user sessions and hourly revenue."""
    _produce(KafkaTarget(bootstrap), "shop", _generated(AnalyticsGenerator, events))
    topic, rows = _ceilings(bootstrap, "shop", events)
    name = "  eventlake run analytics, 1 process"
    rows.append(_eventlake(bootstrap, topic, name, ["run", "analytics"], work / "shop"))
    return f"sessions: {events:,} shop events, 30-minute sessions", rows


SCENARIOS = ((_steady, STEADY_EVENTS), (_scaling, SCALING_EVENTS),
             (_backfill, BACKFILL_EVENTS), (_sessions, SESSION_EVENTS))  # fmt: skip


def _noted(row: Measured, note: str) -> Measured:
    return replace(row, note=note)


def _files(table_dir: Path) -> str:
    files = list(table_dir.rglob("*.parquet"))
    directories = {path.parent for path in files}
    return f"{len(files):,} files in {len(directories):,} directories"


def _table(sections: list[Section]) -> str:
    header = (f"{'scenario':<58}{'events/s':>10}{'CPU s':>7}{'RSS MiB':>8}"
              f"{'vs poll':>8}{'vs batch':>9}  note")  # fmt: skip
    lines = [header]
    for title, rows in sections:
        lines.append(title)
        lines += [f"{row.scenario:<58}{row.per_second:>10,.0f}{row.cpu_seconds:>7.1f}"
                  f"{row.peak_rss_mib:>8,.0f}{row.ratio:>7.2f}x{row.batch_ratio:>8.2f}x  {row.note}"
                  for row in rows]  # fmt: skip
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpus = [line for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")]  # fmt: skip
    return {
        "cpu": cpus[0].split(":", 1)[1].strip() if cpus else platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    """Run every scenario, print the table and write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    scale = parser.parse_args().scale
    topics = [TopicSpec(name, PARTITIONS) for name in ("steady", "scaling", "year", "shop")]
    with EmbeddedBroker(topics=topics) as bootstrap, tempfile.TemporaryDirectory() as work:
        sections = [scenario(bootstrap, round(events * scale), Path(work))
                    for scenario, events in SCENARIOS]  # fmt: skip
    print(_table(sections))
    document = {"machine": machine(), "scale": scale,
                "sections": {title: [{**asdict(row), "events_per_s": row.per_second}
                                     for row in rows] for title, rows in sections}}  # fmt: skip
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {RESULTS} ({document['machine']['cpu']}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
