"""Test helpers that talk to the real broker: produce raw messages, read topics back."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from subprocess import Popen
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from common.progress import Progress
from sinks.recovery_store import resume_epoch
from sources.connection import list_topics
from sources.generators import EventGenerator
from sources.producer import ProduceRequest, produce
from sources.target import KafkaTarget

READ_TIMEOUT_S = 120.0


def produce_raw(target: KafkaTarget, topic: str, values: Sequence[bytes | None]) -> None:
    """Send ``values`` as they are (for malformed input), keyed by index."""
    producer = Producer(target.client_config())
    for index, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=str(index).encode())
                break
            except BufferError:  # the producer's queue is full: let it deliver
                producer.poll(0.1)
    assert producer.flush(30) == 0


def produce_events(target: KafkaTarget, topic: str, generator: EventGenerator, count: int) -> None:
    """Send ``count`` events of ``generator`` with the real producer; all must be delivered."""
    report = produce(generator, target, ProduceRequest(topic, count=count), Progress(topic))
    assert report.sent == count


def read_topic(target: KafkaTarget, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) in ``topic``, read with a plain consumer (an independent reader)."""
    partitions = list_topics(target)[topic]
    consumer = Consumer(
        {**target.client_config(), "group.id": "tests", "enable.partition.eof": True}
    )
    assigned = [TopicPartition(topic, index, 0) for index in range(partitions)]
    ends = {tp.partition: consumer.get_watermark_offsets(tp)[1] for tp in assigned}
    consumer.assign(assigned)
    messages: list[tuple[bytes | None, bytes | None]] = []
    pending = {partition for partition, end in ends.items() if end > 0}
    deadline = time.monotonic() + READ_TIMEOUT_S
    while pending:
        assert time.monotonic() < deadline, (
            f"partitions {pending} of {topic} never reached their end"
        )
        for message in consumer.consume(10_000, 1.0):
            if message.error() is None:
                messages.append((message.key(), message.value()))
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
    consumer.close()
    return messages


def topic_size(target: KafkaTarget, topic: str) -> int:
    """Number of messages in ``topic`` (sum of high watermarks)."""
    consumer = Consumer({**target.client_config(), "group.id": "tests"})
    partitions = list_topics(target)[topic]
    size = sum(
        consumer.get_watermark_offsets(TopicPartition(topic, index))[1]
        for index in range(partitions)
    )
    consumer.close()
    return size


def read_events(target: KafkaTarget, topic: str) -> list[dict[str, Any]]:
    """The JSON-decodable object events of ``topic``, in no particular order."""
    events = []
    for _, value in read_topic(target, topic):
        try:
            decoded = json.loads(value or b"")
        except ValueError:
            continue
        if isinstance(decoded, dict):
            events.append(decoded)
    return events


@contextlib.contextmanager
def cli_process(*args: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """``eventlake ARGS`` as a running OS process; killed on exit if still running."""
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], text=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def eventlake(*args: str, timeout: float = 240, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run the ``eventlake`` CLI as a separate OS process and capture its output; ``popen``
    goes to :class:`subprocess.Popen` (``preexec_fn``, ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


@contextlib.contextmanager
def writing_flow(target: KafkaTarget, topic: str, work: Path) -> Iterator[Popen[str]]:
    """An unbounded ``eventlake run monitoring`` over ``topic`` into ``work/out``, with
    checkpoints in ``work/recovery``, yielded once it has written its first file."""
    out = work / "out"
    command = ["run", "monitoring", "--unbounded", "--topic", topic, "--out", str(out),
               "--recovery-dir", str(work / "recovery"), "--snapshot-interval", "0.2s",
               "--file-max-age", "0.1s", "--idle-timeout", "1s",
               "--brokers", target.bootstrap_servers]  # fmt: skip
    with cli_process(*command, stderr=subprocess.PIPE) as flow:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not list(out.rglob("*.parquet")):
            assert flow.poll() is None, "the unbounded flow stopped"
            assert time.monotonic() < deadline, "the flow wrote no file"
            time.sleep(0.05)
        yield flow


def run_with_kills(command: list[str], kills: int, seed: int) -> None:
    """Run ``command`` as one process, SIGKILLing it ``kills`` times at random moments
    after it committed an epoch; the last attempt is not killed and may finish."""
    rnd = random.Random(seed)
    recovery_dir = Path(command[command.index("--recovery-dir") + 1])
    for _ in range(kills):
        before = max(resume_epoch(recovery_dir) or 1, 1)  # a fresh run starts at epoch 1
        with cli_process(*command, stderr=subprocess.PIPE) as process:
            wait_for_a_commit(recovery_dir, before, process)
            time.sleep(rnd.uniform(0.0, 0.3))
            process.send_signal(signal.SIGKILL)
            _, stderr = process.communicate(timeout=240)
            assert process.returncode == -signal.SIGKILL, f"finished before its kill: {stderr}"


def wait_for_a_commit(recovery_dir: Path, before: int, process: subprocess.Popen[str]) -> None:
    """Block until this run has committed a new epoch, so that the kill lands mid-run."""
    deadline = time.monotonic() + 60
    while (resume_epoch(recovery_dir) or 0) <= before and process.poll() is None:
        assert time.monotonic() < deadline, "no snapshot was ever committed"
        time.sleep(0.05)


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A local TCP port some other socket listens on while inside."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text format parsed into (name, sorted labels) → value."""
    families = text_string_to_metric_families(text)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}  # fmt: skip


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` on a local port: status and body (errors included; URLError when
    nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid``, oldest first."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)
