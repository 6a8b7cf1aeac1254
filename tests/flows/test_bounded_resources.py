"""What a producer or a wide topic can make a run hold: directories, descriptors, threads.

Dead letters and late rows are filed by when the run read them, whatever times their
producer set; a topic of 300 partitions runs under ``ulimit -n 1024`` (the soft limit
raised) or is refused at once, naming the processes that can read it."""

from __future__ import annotations

import json
import re
import resource
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
from confluent_kafka import Producer

from sinks.directories import READ_AT
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events

SPREAD = 2_000
"""Messages a day apart from one another, of each kind."""
NEWEST = datetime(2020, 1, 1, tzinfo=UTC)
FIRST_LATE = datetime(2010, 1, 1, tzinfo=UTC)
"""The event time of the first late event; the others follow a day apart."""
FIRST_STAMP = datetime(2000, 1, 1, tzinfo=UTC)
"""The Kafka timestamp of the first 'not json' message; the others follow a day apart."""
WIDE = 300
"""Partitions: about 2,400 descriptors and 1,200 threads of Kafka consumers."""
WIDE_EVENTS = 3_000
LIMIT = 1_024


def _days_from(first: datetime) -> list[datetime]:
    return [first + timedelta(days=day) for day in range(SPREAD)]


def _produce_spread(broker: Broker, topic: str) -> None:
    """An event that moves the watermark, then late events and 'not json' messages a day
    apart."""
    producer = Producer(broker.target.client_config())
    producer.produce(topic, json.dumps({"ts": NEWEST.isoformat(), "k": "a"}).encode())
    for late, stamp in zip(_days_from(FIRST_LATE), _days_from(FIRST_STAMP), strict=True):
        producer.produce(topic, json.dumps({"ts": late.isoformat(), "k": "a"}).encode())
        producer.produce(topic, b"not json", timestamp=int(stamp.timestamp() * 1000))
        producer.poll(0)
    assert producer.flush(30) == 0


def _days_filed(table_dir: Path) -> set[date]:
    """The days of the Hive directories of ``table_dir``."""
    return {date.fromisoformat(path.name.removeprefix("date="))
            for path in table_dir.iterdir() if path.is_dir() and path.name[0] != "."}  # fmt: skip


def test_dead_letters_and_late_rows_are_filed_by_when_the_run_read_them(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic, out = new_topic(partitions=1), tmp_path / "out"
    _produce_spread(broker, topic)
    started = datetime.now(UTC)

    # One message per batch: the newest event has moved the watermark when the others come.
    done = eventlake("aggregate", "--topic", topic, "--time-field", "ts", "--key", "k",
                     "--window", "1h", "--bounded", "--batch-size", "1", "--out", str(out),
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip

    assert done.returncode == 0, done.stderr
    days_of_run = {started.date(), datetime.now(UTC).date()}
    for table, column, first in (("dead_letter", "kafka_timestamp", FIRST_STAMP),
                                 ("late", "ts", FIRST_LATE)):  # fmt: skip
        assert _days_filed(out / table) <= days_of_run, table
        rows = ds.dataset(out / table, partitioning="hive").to_table().to_pylist()
        kept = sorted(row[column] for row in rows)
        assert kept == _days_from(first), table  # every row, the producer's time kept
        assert all(str(row["date"]) == str(row[READ_AT.name].date()) for row in rows)


def _limited(soft: int, hard: int) -> Callable[[], None]:
    """What a child runs before it starts: ``ulimit -Sn soft -Hn hard``."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _wide_topic(broker: Broker, new_topic: NewTopic) -> str:
    topic = new_topic(partitions=WIDE)
    produce_events(broker.target, topic, MonitoringGenerator(seed=3), WIDE_EVENTS)
    return topic


def _run_wide(broker: Broker, topic: str, out: Path, limit: Callable[[], None], *more: str) -> str:
    """``eventlake run monitoring`` over ``topic`` under ``limit``; its stderr once it has read
    every event (else the test fails with it)."""
    done = eventlake("run", "monitoring", "--topic", topic, "--bounded", "--out", str(out),
                     "--brokers", broker.target.bootstrap_servers, *more,
                     preexec_fn=limit, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{WIDE_EVENTS:,}/{WIDE_EVENTS:,} events" in done.stderr, done.stderr
    return done.stderr


def test_300_partitions_under_ulimit_n_1024_run_with_the_soft_limit_raised(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = _wide_topic(broker, new_topic)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    stderr = _run_wide(broker, topic, tmp_path / "out", _limited(LIMIT, hard))

    assert f"raised this process's limit of open files from {LIMIT:,} to" in stderr
    assert "waiting for Kafka" not in stderr


def test_300_partitions_under_a_hard_limit_of_1024_exit_2_at_once_naming_the_processes_that_fit(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = _wide_topic(broker, new_topic)
    too_few = _limited(LIMIT, LIMIT)

    refused = eventlake("run", "monitoring", "--topic", topic, "--bounded",
                        "--out", str(tmp_path / "refused"),
                        "--brokers", broker.target.bootstrap_servers,
                        preexec_fn=too_few, timeout=60)  # fmt: skip

    assert refused.returncode == 2, refused.stderr
    message = refused.stderr
    assert f"reading {WIDE} partitions of {topic!r} in this process takes about" in message
    assert f"it may have {LIMIT:,} (`ulimit -n`, hard limit {LIMIT:,})" in message
    assert "waiting for Kafka" not in message
    assert not list((tmp_path / "refused").rglob("*.parquet"))
    processes = re.search(r"--processes (\d+) on one host", message)
    assert processes is not None, message
    _run_wide(broker, topic, tmp_path / "out", too_few, "--processes", processes.group(1))
