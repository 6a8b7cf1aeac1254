"""Offsets deleted before a flow read them are gaps, never silent; a broker outage delays a
flow and loses nothing. Real broker (its size cap, its brokers taken down), real CLI runs."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from sources.broker import EmbeddedBroker
from sources.target import KafkaTarget
from sources.topics import TopicSpec
from tests.conftest import Broker, NewTopic
from tests.helpers import READ_TIMEOUT_S, cli_process, eventlake, produce_raw, run_with_kills

pytestmark = pytest.mark.integration  # starts brokers of its own

START = datetime(2024, 5, 1, tzinfo=UTC)
BEFORE_GAP = 20_000
PAST_THE_CAP = 60_000
"""With ~100-byte values, the embedded broker keeps about 47,000 per partition."""
OUTAGE_S = 8.0


def _events(first: int, count: int) -> list[bytes]:
    """Events ``first`` to ``first + count - 1``: 10 per second, 5 services, ~100 bytes."""
    return [
        json.dumps(
            {"ts": (START + timedelta(milliseconds=100 * i)).isoformat(),
             "service": f"s{i % 5}", "latency_ms": i % 997, "pad": "x" * 24}
        ).encode()
        for i in range(first, first + count)
    ]  # fmt: skip


def _aggregate(topic: str, out: Path, target: KafkaTarget, *extra: str) -> list[str]:
    return ["aggregate", "--topic", topic, "--time-field", "ts", "--key", "service",
            "--window", "1m", "--agg", "count", "--out", str(out), "--batch-size", "200",
            "--snapshot-interval", "0.1s", "--file-max-age", "0.1s",
            "--brokers", target.bootstrap_servers, *extra]  # fmt: skip


def _rows(out: Path, table: str) -> pa.Table:
    return ds.dataset(out / table, partitioning="hive").to_table()


def _log_start(target: KafkaTarget, topic: str) -> int:
    consumer = Consumer({**target.client_config(), "group.id": "tests"})
    low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    return int(low)


def test_offsets_deleted_while_a_flow_is_stopped_are_gaps_and_everything_adds_up(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out, recovery = new_topic(partitions=1), tmp_path / "out", tmp_path / "recovery"
    produce_raw(broker.target, topic, _events(0, BEFORE_GAP))
    command = _aggregate(
        topic, out, broker.target, "--bounded", "--final", "--recovery-dir", str(recovery)
    )
    run_with_kills(command, kills=1, seed=3)
    produce_raw(broker.target, topic, _events(BEFORE_GAP, PAST_THE_CAP))
    first_available = _log_start(broker.target, topic)
    assert first_available > BEFORE_GAP, "the broker kept everything: produce more"

    refused = eventlake(*command, "--on-gap", "fail")
    resumed = eventlake(*command)

    assert refused.returncode == 1, refused.stderr
    assert "were deleted from Kafka" in refused.stderr
    assert "--on-gap continue" in refused.stderr and "new --recovery-dir" in refused.stderr
    assert resumed.returncode == 0, resumed.stderr
    gaps = _rows(out, "gaps").to_pylist()
    assert "gap: offsets" in resumed.stderr
    assert f"{gaps[0]['missing']:,} messages were deleted from Kafka" in resumed.stderr
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap["first_available_offset"] == first_available
    assert gap["missing"] == first_available - gap["expected_offset"] > 0
    counted = pc.sum(_rows(out, "windows")["count"]).as_py()
    lost = _rows(out, "late").num_rows + _rows(out, "dead_letter").num_rows
    assert counted + lost + gap["missing"] == BEFORE_GAP + PAST_THE_CAP


def test_a_fresh_run_on_a_topic_whose_oldest_offsets_are_gone_has_no_gap(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    produce_raw(broker.target, topic, _events(0, BEFORE_GAP + PAST_THE_CAP))
    first_available = _log_start(broker.target, topic)

    done = eventlake(*_aggregate(topic, tmp_path / "out", broker.target, "--bounded"))

    assert done.returncode == 0, done.stderr
    assert _rows(tmp_path / "out", "gaps").num_rows == 0
    counted = pc.sum(_rows(tmp_path / "out", "windows")["count"]).as_py()
    assert counted == BEFORE_GAP + PAST_THE_CAP - first_available


def _oracle(values: Sequence[bytes]) -> dict[tuple[str, datetime], int]:
    """Events per (service, minute), counted in batch with numpy."""
    events = [json.loads(value) for value in values]
    minutes = np.array(
        [datetime.fromisoformat(event["ts"]).timestamp() // 60 for event in events], np.int64
    )
    services = np.array([event["service"] for event in events])
    keys, counts = np.unique(np.rec.fromarrays([services, minutes]), return_counts=True)
    return {
        (str(service), datetime.fromtimestamp(int(minute) * 60, UTC)): int(count)
        for (service, minute), count in zip(keys, counts, strict=True)
    }


def _windows(out: Path) -> dict[tuple[str, datetime], int]:
    rows = _rows(out, "windows").to_pylist()
    return {(row["service"], row["window_start"]): row["count"] for row in rows}


@contextlib.contextmanager
def _own_broker(partitions: int) -> Iterator[tuple[EmbeddedBroker, KafkaTarget]]:
    """A broker of this test's own (taking it down disturbs no other test)."""
    embedded = EmbeddedBroker(topics=[TopicSpec("outage", partitions)])
    with embedded as bootstrap:
        yield embedded, KafkaTarget(bootstrap)


def _checkpoints(tmp_path: Path) -> tuple[str, str]:
    """Checkpoints make the flow commit (and so write files) every snapshot interval."""
    return "--recovery-dir", str(tmp_path / "recovery")


def _wait_for_output(flow: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not list(out.rglob("*.parquet")):
        assert flow.poll() is None, "the flow stopped before writing anything"
        assert time.monotonic() < deadline, "the flow wrote no file"
        time.sleep(0.02)


def test_an_outage_in_the_middle_of_a_bounded_run_delays_it_and_loses_nothing(
    tmp_path: Path,
) -> None:
    values, out = _events(0, 150_000), tmp_path / "out"
    with _own_broker(partitions=4) as (embedded, target):
        produce_raw(target, "outage", values)
        command = _aggregate("outage", out, target, "--bounded", "--final", *_checkpoints(tmp_path))
        with cli_process(*command, stderr=subprocess.PIPE) as flow:
            _wait_for_output(flow, out)
            embedded.set_broker_up(None, up=False)
            time.sleep(OUTAGE_S)
            embedded.set_broker_up(None, up=True)
            _, stderr = flow.communicate(timeout=READ_TIMEOUT_S)

    assert flow.returncode == 0, stderr
    assert "waiting for Kafka at" in stderr
    assert _windows(out) == _oracle(values)


def test_an_outage_in_an_unbounded_run_delays_events_sent_meanwhile_and_loses_none(
    tmp_path: Path,
) -> None:
    first, second, out = _events(0, 20_000), _events(20_000, 20_000), tmp_path / "out"
    with _own_broker(partitions=2) as (embedded, target):
        produce_raw(target, "outage", first)
        command = _aggregate("outage", out, target, "--unbounded", *_checkpoints(tmp_path))
        with cli_process(*command, stderr=subprocess.PIPE) as flow:
            _wait_for_output(flow, out)
            embedded.set_broker_up(None, up=False)
            sending = threading.Thread(target=produce_raw, args=(target, "outage", second))
            sending.start()  # queued by the producer while the broker is down
            time.sleep(OUTAGE_S)
            embedded.set_broker_up(None, up=True)
            sending.join()
            _close_every_window(target, partitions=2)
            _wait_for_count(flow, out, len(first) + len(second))
            flow.send_signal(signal.SIGTERM)
            _, stderr = flow.communicate(timeout=READ_TIMEOUT_S)

    assert flow.returncode == 0, stderr
    assert _windows(out) == _oracle(first + second)


def _close_every_window(target: KafkaTarget, partitions: int) -> None:
    """One event an hour later in every partition, so the watermark passes every window
    of the test's events (its own window stays open)."""
    later = json.dumps({"ts": (START + timedelta(days=1)).isoformat(), "service": "end"})
    producer = Producer(target.client_config())
    for partition in range(partitions):
        producer.produce("outage", value=later.encode(), partition=partition)
    assert producer.flush(30) == 0


def _wait_for_count(flow: subprocess.Popen[str], out: Path, count: int) -> None:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while _counted(out) < count:
        assert flow.poll() is None, "the unbounded flow stopped"
        assert time.monotonic() < deadline, f"only {_counted(out)} of {count} events counted"
        time.sleep(0.1)


def _counted(out: Path) -> int:
    try:
        return int(pc.sum(_rows(out, "windows")["count"]).as_py() or 0)
    except (FileNotFoundError, OSError):  # a file removed or renamed while listing
        return 0


def test_a_broker_unreachable_at_start_is_retried_visibly_then_exit_2(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    command = _aggregate("t", tmp_path / "out", KafkaTarget(closed), "--bounded")

    started = time.monotonic()
    refused = eventlake(*command, "--broker-timeout", "3s")

    assert refused.returncode == 2
    assert time.monotonic() - started >= 3
    assert f"cannot reach Kafka at {closed} within 3s" in refused.stderr
    assert "--broker-timeout" in refused.stderr


def test_a_run_started_while_the_broker_is_down_waits_for_it(tmp_path: Path) -> None:
    values, out = _events(0, 5_000), tmp_path / "out"
    with _own_broker(partitions=2) as (embedded, target):
        produce_raw(target, "outage", values)
        embedded.set_broker_up(None, up=False)
        with cli_process(*_aggregate("outage", out, target, "--bounded"),
                         stderr=subprocess.PIPE) as flow:  # fmt: skip
            time.sleep(OUTAGE_S)
            embedded.set_broker_up(None, up=True)
            _, stderr = flow.communicate(timeout=READ_TIMEOUT_S)

    assert flow.returncode == 0, stderr
    assert "does not answer" in stderr and "retrying for" in stderr
    assert _windows(out) == _oracle(values)
