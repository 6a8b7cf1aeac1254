"""``make soak``: both kinds of flow unbounded on a live producer, under chaos, for a while.

A producer sends monitoring events in wall-clock time to the embedded broker. The
monitoring flow and an ``aggregate`` over the same topic run unbounded with checkpoints,
while a seeded plan SIGKILLs them at random moments (22 times in all), takes the broker
down twice, stops each once for a bounded rerun, and rescales the aggregate to two
processes and back. Then the producer stops and a final bounded run closes every
window. Checked at the end, against the topic read back in batch:

- no (key, window) written twice;
- each window's count plus its late rows equals the batch count of its events;
- windows + late + dead letters = messages produced;
- peak RSS of the flows in the last hour within 10% of the first hour's (in the last
  third against the first for a run shorter than three hours).

``make soak SOAK_DURATION=1h`` (default 30m) runs it; it exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from confluent_kafka import Consumer, TopicPartition

from common.units import parse_duration
from sources.broker import EmbeddedBroker
from sources.target import KafkaTarget
from sources.topics import TopicSpec
from tests.flows import oracle
from tests.helpers import READ_TIMEOUT_S, children_of

TOPIC, PARTITIONS, RATE = "requests", 8, 120
PRODUCER_SETTINGS = ["-X", "linger.ms=500"]
"""Few, larger batches: the embedded broker keeps at most 100,000 batches a partition."""
KILLS, OUTAGE_S, SAMPLE_S, REPORT_S = 22, 8.0, 5.0, 60.0
RSS_SEGMENT_S = 3_600.0
MINUTE_US = 60_000_000
Plan = list[tuple[float, str, str]]
"""(seconds after the start, action, flow name), in time order."""


@dataclass
class Flow:
    """One flow under test: its command, its process tree, and its memory over time."""

    name: str
    args: list[str]
    work: Path
    processes: int = 1
    process: subprocess.Popen[str] | None = None
    rss: list[tuple[float, int]] = field(default_factory=list)

    def command(self, *mode: str) -> list[str]:
        """The CLI command in ``mode`` (``--unbounded``, ``--bounded`` [``--final``])."""
        return [sys.executable, "-m", "flows.cli", *self.args, *mode, "--out",
                str(self.work / "out"), "--recovery-dir", str(self.work / "recovery"),
                "--snapshot-interval", "2s", "--processes", str(self.processes)]  # fmt: skip

    def start(self) -> None:
        """Start it unbounded, logging to its work directory."""
        with (self.work / "stderr.log").open("a") as log:
            self.process = subprocess.Popen(
                self.command("--unbounded"), stdout=log, stderr=log, text=True
            )

    def kill(self) -> None:
        """SIGKILL it and every process it started: a crash."""
        assert self.process is not None
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM it; SystemExit unless it stops cleanly (or dies of the signal while it
        is still starting, before it reads anything)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=120) not in (0, -signal.SIGTERM):
            raise SystemExit(f"{self.name} did not stop cleanly; see {self.work}/stderr.log")

    def run_bounded(self, *final: str) -> None:
        """A bounded run to its end (``--final`` closes every window)."""
        with (self.work / "stderr.log").open("a") as log:
            done = subprocess.run(
                self.command("--bounded", *final), stdout=log, stderr=log, check=False
            )
        if done.returncode:
            raise SystemExit(f"{self.name}: a bounded run failed; see {self.work}/stderr.log")

    def sample_rss(self, at: float) -> None:
        """Record the resident memory (KiB) of its processes now."""
        if self.process is not None and self.process.poll() is None:
            pids = [self.process.pid, *_descendants(self.process.pid)]
            self.rss.append((at, sum(map(_rss_kib, pids))))


def _descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *_descendants(child)]
    return found


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TopicRecorder:
    """Every message of the topic, read as it arrives by a plain consumer of its own (the
    batch oracle's input): the embedded broker deletes a partition's oldest messages past
    its size limit, which a long soak reaches, so reading the topic at the end would not
    see them all."""

    def __init__(self, target: KafkaTarget) -> None:
        settings = {"group.id": "soak-oracle", "auto.offset.reset": "earliest"}
        self._consumer = Consumer({**target.client_config(), **settings})
        self._consumer.assign([TopicPartition(TOPIC, part, 0) for part in range(PARTITIONS)])
        self.messages: list[tuple[bytes | None, bytes | None]] = []
        self._next: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(10_000, 0.5):
                if message.error() is None:
                    self.messages.append((message.key(), message.value()))
                    self._next[message.partition()] = message.offset() + 1

    def finish(self, target: KafkaTarget) -> list[tuple[bytes | None, bytes | None]]:
        """Every message, once each partition is read to its end offset; SystemExit if one
        was deleted before it was read (the oracle would be incomplete)."""
        ends = _end_offsets(target)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(self._next.get(part, 0) < end for part, end in ends.items()):
            if time.monotonic() > deadline:
                raise SystemExit(f"the oracle's reader never reached the end offsets {ends}")
            time.sleep(0.2)
        self._stop.set()
        self._thread.join()
        self._consumer.close()
        if len(self.messages) != sum(ends.values()):
            raise SystemExit(f"the oracle read {len(self.messages):,} of {sum(ends.values()):,}")
        return self.messages


def _end_offsets(target: KafkaTarget) -> dict[int, int]:
    consumer = Consumer({**target.client_config(), "group.id": "soak-ends"})
    try:
        return {part: consumer.get_watermark_offsets(TopicPartition(TOPIC, part), 30)[1]
                for part in range(PARTITIONS)}  # fmt: skip
    finally:
        consumer.close()


def chaos_plan(duration_s: float, rnd: random.Random) -> Plan:
    """Kills at random moments, alternating flows; two outages; a bounded rerun of each;
    the aggregate rescaled to two processes and back within the middle third (whose
    memory is not compared)."""

    def moment() -> float:
        return rnd.uniform(0.05, 0.85) * duration_s

    plan = [(moment(), "kill", ("monitoring", "aggregate")[k % 2]) for k in range(KILLS)]
    plan += [(moment(), "outage", "broker") for _ in range(2)]
    plan += [(0.3 * duration_s, "rerun", "monitoring"), (0.55 * duration_s, "rerun", "aggregate")]
    plan += [
        (0.4 * duration_s, "rescale 2", "aggregate"),
        (0.6 * duration_s, "rescale 1", "aggregate"),
    ]
    return sorted(plan)


def act(action: str, flow: Flow | None, broker: EmbeddedBroker) -> None:
    """Carry out one step of the plan."""
    if flow is None:  # an outage
        broker.set_broker_up(None, up=False)
        time.sleep(OUTAGE_S)
        broker.set_broker_up(None, up=True)
    elif action == "kill":
        flow.kill()
        flow.start()
    elif action == "rerun":
        flow.stop()
        flow.run_bounded()
        flow.start()
    else:  # "rescale N": a clean stop, then the same checkpoint with N processes
        flow.stop()
        flow.processes = int(action.split()[1])
        flow.start()


def soak(duration_s: float, seed: int, work: Path) -> list[str]:
    """Run the plan against both flows; what went wrong (nothing: an empty list)."""
    broker = EmbeddedBroker(topics=[TopicSpec(TOPIC, PARTITIONS)])
    with broker as bootstrap:
        flows = _flows(work, bootstrap)
        recorder = TopicRecorder(broker.target)
        producer = _producer(bootstrap, work)
        try:
            _chaos(flows, broker, duration_s, seed)
            producer.send_signal(signal.SIGINT)
            producer.wait(timeout=60)
            for flow in flows.values():
                flow.stop()
                flow.run_bounded("--final")
            messages = recorder.finish(broker.target)
        finally:  # whatever happened, leave no process running
            producer.kill()
            for flow in flows.values():
                if flow.process is not None and flow.process.poll() is None:
                    flow.kill()
    problems = _check(flows["monitoring"], "service_metrics", ("service", "endpoint"), messages)
    problems += _check(flows["aggregate"], "windows", ("service",), messages)
    return problems + [line for flow in flows.values() for line in _memory(flow, duration_s)]


def _chaos(flows: dict[str, Flow], broker: EmbeddedBroker, duration_s: float, seed: int) -> None:
    """Start the flows and carry out the plan until ``duration_s`` has passed."""
    for flow in flows.values():
        flow.start()
    started = time.monotonic()
    for at, action, name in chaos_plan(duration_s, random.Random(seed)):
        _wait_until(started + at, flows, started)
        print(f"{_clock(started)} {action} {name}", flush=True)
        act(action, flows.get(name), broker)
    _wait_until(started + duration_s, flows, started)


def _flows(work: Path, bootstrap: str) -> dict[str, Flow]:
    brokers = ["--topic", TOPIC, "--brokers", bootstrap]
    aggregate = ["aggregate", "--time-field", "ts", "--key", "service", "--value",
                 "latency_ms", "--window", "1m", "--agg", "count,mean,max,p99"]  # fmt: skip
    made = {"monitoring": ["run", "monitoring"], "aggregate": aggregate}
    for name in made:
        (work / name).mkdir()
    return {name: Flow(name, [*args, *brokers], work / name) for name, args in made.items()}


def _producer(bootstrap: str, work: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "flows.cli", "produce", "monitoring", "--topic", TOPIC,
               "--rate", str(RATE), "--brokers", bootstrap, *PRODUCER_SETTINGS]  # fmt: skip
    with (work / "producer.log").open("w") as log:
        return subprocess.Popen(command, stderr=log, stdout=log, text=True)


def _wait_until(deadline: float, flows: dict[str, Flow], started: float) -> None:
    """Sample memory (and say where the run stands) until ``deadline``."""
    next_report = time.monotonic()
    while time.monotonic() < deadline:
        for flow in flows.values():
            flow.sample_rss(time.monotonic() - started)
        if time.monotonic() >= next_report:
            rss = ", ".join(f"{f.name} {f.rss[-1][1] // 1024} MiB" for f in flows.values() if f.rss)
            print(f"{_clock(started)} running; RSS {rss}", flush=True)
            next_report += REPORT_S
        time.sleep(min(SAMPLE_S, max(deadline - time.monotonic(), 0)))


def _clock(started: float) -> str:
    elapsed = int(time.monotonic() - started)
    return f"[{elapsed // 60:3d}m{elapsed % 60:02d}s]"


def _check(flow: Flow, table: str, keys: tuple[str, ...], messages: list[Any]) -> list[str]:
    """The flow's output against the batch oracle; a line per problem."""
    out = flow.work / "out"

    def window(row: dict[str, Any]) -> tuple[Any, ...]:
        return (*(row[key] for key in keys), oracle.micros(row["window_start"]))

    rows = ds.dataset(out / table).to_table(columns=[*keys, "window_start", "count"]).to_pylist()
    counts = Counter()
    for row in rows:
        counts[window(row)] += row["count"]
    twice = len(rows) - len(counts)
    late = Counter(window(row) for row in _rows(out / "late"))
    dead = len(_rows(out / "dead_letter"))
    expected = oracle.tumbling(oracle.parse_events(messages, ("service",)), keys, MINUTE_US)
    wrong = [w for w, events in expected.items() if counts[w] + late[w] != len(events)]
    total = sum(counts.values()) + sum(late.values()) + dead
    print(f"{flow.name}: {len(messages):,} messages; {len(counts):,} windows, "
          f"{sum(late.values()):,} late, {dead:,} dead letters; {len(wrong)} windows differ "
          f"from the oracle, {twice} written twice")  # fmt: skip
    problems = [f"{flow.name}: {twice} windows written twice"] if twice else []
    problems += [f"{flow.name}: {len(wrong)} windows differ, e.g. {wrong[:3]}"] if wrong else []
    if total != len(messages):
        problems.append(f"{flow.name}: windows + late + dead letters = {total:,} messages")
    return problems


def _rows(directory: Path) -> list[dict[str, Any]]:
    try:
        return list(ds.dataset(directory, partitioning="hive").to_table().to_pylist())
    except (FileNotFoundError, OSError):
        return []


def _segments(flow: Flow, duration_s: float) -> tuple[int, int]:
    """Peak RSS (KiB) in the first and the last segment of the run."""
    segment = RSS_SEGMENT_S if duration_s >= 3 * RSS_SEGMENT_S else duration_s / 3
    first = max((rss for at, rss in flow.rss if at < segment), default=0)
    last = max((rss for at, rss in flow.rss if at >= duration_s - segment), default=0)
    return first, last


def _memory(flow: Flow, duration_s: float) -> list[str]:
    """A line if peak RSS late in the run is more than 10% above early in the run."""
    first, last = _segments(flow, duration_s)
    print(f"{flow.name}: peak RSS {first / 1024:.0f} MiB early, {last / 1024:.0f} MiB late")
    if last <= 1.1 * first:
        return []
    return [f"{flow.name}: peak RSS grew from {first / 1024:.0f} MiB to {last / 1024:.0f} MiB"]


def main() -> None:
    """Parse ``--duration`` and ``--seed``, soak, and exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", default="30m", help="e.g. 30m, 1h (default 30m)")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    duration_s = parse_duration(options.duration).total_seconds()
    work = Path(tempfile.mkdtemp(prefix="eventlake-soak-"))
    problems = soak(duration_s, options.seed, work)  # a failure keeps work/ to look at
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    if problems:
        print(f"soak failed: {len(problems)} problem(s); logs and tables are in {work}")
        sys.exit(1)
    shutil.rmtree(work)
    print("soak passed")


if __name__ == "__main__":
    main()
