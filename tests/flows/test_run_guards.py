"""One recovery directory, one run at a time, and only the run it was made for."""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import socket
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.runtime.checkpoints import owned
from flows.runtime.runner import Processes
from sinks.recovery_store import RecoveryStore, RecoveryStoreError, resume_epoch
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events, writing_flow

START = datetime(2024, 5, 1, 8, tzinfo=UTC)


def _aggregate(topic: str, work: Path, broker: Broker, *options: str) -> list[str]:
    defaults = {"--key": "service", "--window": "1m", "--agg": "count"}
    for option, value in zip(options[::2], options[1::2], strict=True):
        defaults[option] = value
    return ["aggregate", "--topic", topic, "--time-field", "ts", "--bounded",
            "--out", str(work / "out"), "--recovery-dir", str(work / "recovery"),
            "--brokers", broker.target.bootstrap_servers,
            *(item for pair in defaults.items() for item in pair)]  # fmt: skip


@pytest.fixture
def finished_run(broker: Broker, new_topic: NewTopic, tmp_path: Path) -> str:
    """A topic whose bounded aggregate run into ``tmp_path`` has finished."""
    topic = new_topic()
    produce_events(broker.target, topic, MonitoringGenerator(seed=5), 2_000)
    first = eventlake(*_aggregate(topic, tmp_path, broker))
    assert first.returncode == 0, first.stderr
    return topic


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (("--window", "5m"), "the checkpoint, keys service; tumbling 300s;"),
        (("--key", "endpoint"), "the checkpoint, keys endpoint; tumbling 60s;"),
        (("--agg", "count,max", "--value", "latency_ms"), "columns count, max_latency_ms"),
        (("--filter", "status >= 500"), "filter (status >= 500) now"),
    ],
)  # fmt: skip
def test_a_resume_with_another_definition_is_refused_naming_the_difference(
    broker: Broker, finished_run: str, tmp_path: Path, change: tuple[str, ...], difference: str
) -> None:
    refused = eventlake(*_aggregate(finished_run, tmp_path, broker, *change))

    assert refused.returncode == 2, refused.stderr
    assert "holds a run with another definition (table windows: keys service" in refused.stderr
    assert difference in refused.stderr
    assert "new --recovery-dir and an empty --out" in refused.stderr


def test_another_topic_is_refused_and_a_new_lateness_is_said(
    broker: Broker, new_topic: NewTopic, finished_run: str, tmp_path: Path
) -> None:
    other = new_topic()
    refused = eventlake(*_aggregate(other, tmp_path, broker))
    lateness = eventlake(*_aggregate(finished_run, tmp_path, broker), "--lateness", "10s")

    assert refused.returncode == 2
    assert f"topic: {finished_run} in the checkpoint, {other} now" in refused.stderr
    assert lateness.returncode == 0, lateness.stderr
    assert "lateness changed from 5s to 10s since the last run" in lateness.stderr


def test_a_second_run_on_the_same_recovery_directory_is_refused_until_the_first_dies(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic()
    produce_events(broker.target, topic, MonitoringGenerator(seed=6, start=START), 20_000)
    second = ["run", "monitoring", "--bounded", "--topic", topic, "--out", str(tmp_path / "out"),
              "--recovery-dir", str(tmp_path / "recovery"),
              "--brokers", broker.target.bootstrap_servers]  # fmt: skip

    with writing_flow(broker.target, topic, tmp_path) as first:
        refused = eventlake(*second)
        other_count = eventlake(*second, "-i", "1", "-a", "127.0.0.1:1;127.0.0.1:2")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    after_the_kill = eventlake(*second)

    assert refused.returncode == 2
    assert f"is in use by pid {first.pid} on host {socket.gethostname()}" in refused.stderr
    assert other_count.returncode == 2
    assert "in use by a run of 1 processes" in other_count.stderr
    assert "this run of 2 cannot share it" in other_count.stderr
    assert after_the_kill.returncode == 0, after_the_kill.stderr


def test_a_checkpoint_of_another_version_is_refused_saying_so(
    broker: Broker, finished_run: str, tmp_path: Path
) -> None:
    definition_file = tmp_path / "recovery" / "run-definition.json"
    definition = json.loads(definition_file.read_text())
    del definition["checkpoint format"]  # as the releases before formats were numbered
    definition_file.write_text(json.dumps(definition))

    refused = eventlake(*_aggregate(finished_run, tmp_path, broker))

    assert refused.returncode == 2
    assert "checkpoints of another eventlake version (format 1" in refused.stderr
    assert "new --recovery-dir and an empty --out" in refused.stderr


def test_processes_starting_together_do_not_refuse_each_other_over_a_dead_runs_record(
    tmp_path: Path,
) -> None:
    """Process 0 of a new two-process run has just locked its file, which still holds
    the record of a dead one-process run; process 1 must wait for the new record."""
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    lock_file = recovery / ".owner-0.lock"
    lock_file.write_text(json.dumps({"pid": 1, "host": "old", "processes": 1}))
    addresses = ("127.0.0.1:1", "127.0.0.1:2")
    with lock_file.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rewrite = threading.Timer(0.2, lambda: lock_file.write_text(json.dumps(
            {"pid": 2, "host": "new", "processes": 2})))  # fmt: skip
        rewrite.start()
        with owned(recovery, Processes(1, addresses)):
            pass
        rewrite.join()


def test_a_damaged_checkpoint_fails_loudly_instead_of_resuming_from_part_of_it(
    broker: Broker, finished_run: str, tmp_path: Path
) -> None:
    """A partition whose tables cannot be read: before, its reads were skipped and the
    resume epoch came from the other partitions."""
    recovery = tmp_path / "recovery"
    assert resume_epoch(recovery) is not None
    damaged = recovery / "part-3.sqlite3"
    with sqlite3.connect(damaged) as connection:
        connection.execute("DROP TABLE fronts")
    for in_flow in (False, True):  # read here, and through the helper a flow uses
        with (
            contextlib.closing(RecoveryStore(recovery, in_flow)) as store,
            pytest.raises(
                RecoveryStoreError, match=f"cannot read the checkpoint partition {damaged}"
            ),
        ):
            store.resume_epoch()

    resumed = eventlake(*_aggregate(finished_run, tmp_path, broker))
    assert resumed.returncode == 1, resumed.stderr
    assert (
        resumed.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot read the checkpoint partition {damaged}: no such table: fronts")
    )
    assert "Traceback" not in resumed.stderr
