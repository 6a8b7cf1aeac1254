"""One run per output, and no code from data or working directories: driven through the CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from bytewax.recovery import init_db_dir

from sinks.table_sink import SINK_MARKER
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import cli_process, eventlake, produce_events, writing_flow

START = datetime(2024, 5, 1, 8, tzinfo=UTC)
EVENTLAKE_SCRIPT = str(Path(sys.executable).parent / "eventlake")
"""The console script users run: unlike ``python -m``, it puts no working directory on
``sys.path``, so a test of what the run's children import must start from it."""


def monitoring(topic: str, out: Path, broker: Broker, *options: str) -> list[str]:
    return ["run", "monitoring", "--topic", topic, "--out", str(out),
            "--brokers", broker.target.bootstrap_servers, *options]  # fmt: skip


def table_rows(out: Path, table: str = "service_metrics") -> int:
    return ds.dataset(out / table, partitioning="hive").count_rows()


@pytest.fixture
def topic(broker: Broker, new_topic: NewTopic) -> str:
    name = new_topic()
    produce_events(broker.target, name, MonitoringGenerator(seed=7, start=START), 6_000)
    return name


@pytest.mark.parametrize("second_checkpoints", [True, False], ids=["checkpoints", "none"])
def test_a_second_run_on_a_written_out_is_refused_at_once_naming_the_holder(
    broker: Broker, topic: str, tmp_path: Path, second_checkpoints: bool
) -> None:
    out = tmp_path / "out"
    checkpoints = ["--recovery-dir", str(tmp_path / "other")] if second_checkpoints else []
    second = monitoring(topic, out, broker, "--bounded", "--window", "2m", *checkpoints)
    with writing_flow(broker.target, topic, tmp_path) as first:
        refused = eventlake(*second)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)

    assert refused.returncode == 2, refused.stderr
    assert f"is being written by another run (pid {first.pid} on host" in refused.stderr
    assert f"--recovery-dir {(tmp_path / 'recovery').resolve()}" in refused.stderr
    assert "pass another --out" in refused.stderr
    resumed = eventlake(*monitoring(topic, out, broker, "--bounded", "--final",
                                    "--recovery-dir", str(tmp_path / "recovery")))  # fmt: skip
    alone = eventlake(*monitoring(topic, tmp_path / "alone", broker, "--bounded"))
    assert resumed.returncode == alone.returncode == 0, resumed.stderr + alone.stderr
    assert table_rows(out) == table_rows(tmp_path / "alone"), "the first run lost nothing"


def test_a_copy_of_a_running_runs_recovery_directory_is_another_run_and_is_refused(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    """The copy has the same run id: taken for the same run, it would share the claim and
    delete the first run's pending files as its own."""
    out, copy = tmp_path / "out", tmp_path / "copy"
    with writing_flow(broker.target, topic, tmp_path) as first:
        shutil.copytree(tmp_path / "recovery", copy, ignore=shutil.ignore_patterns("*.lock"))
        refused = eventlake(*monitoring(topic, out, broker, "--bounded", "--recovery-dir",
                                        str(copy)))  # fmt: skip
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)

    assert (copy / "run-id").read_text() == (tmp_path / "recovery" / "run-id").read_text()
    assert refused.returncode == 2, refused.stderr
    assert f"is being written by another run (pid {first.pid} on host" in refused.stderr


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "none"])
def test_of_two_runs_started_together_on_one_out_one_writes_and_the_other_is_refused(
    broker: Broker, topic: str, tmp_path: Path, checkpoints: bool
) -> None:
    out = tmp_path / "out"
    runs = []
    for name, window in (("a", "1m"), ("b", "2m")):
        recovery = ["--recovery-dir", str(tmp_path / name), "--final"] if checkpoints else []
        command = monitoring(topic, out, broker, "--bounded", "--window", window, *recovery)
        runs.append(cli_process(*command, stderr=subprocess.PIPE))
    with runs[0] as first, runs[1] as second:
        errors = [first.communicate(timeout=240)[1], second.communicate(timeout=240)[1]]
    codes = sorted([first.returncode, second.returncode])

    assert codes == [0, 2], errors
    winner = [first, second].index(first if first.returncode == 0 else second)
    alone = eventlake(*monitoring(topic, tmp_path / "alone", broker, "--bounded",
                                  "--window", ("1m", "2m")[winner]))  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert table_rows(out) == table_rows(tmp_path / "alone"), "only the winner's rows"


class _Planted:
    """Unpickled, it creates ``path``: what a crafted checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return os.system, (f"touch {self.path}",)


def _crafted_recovery_dir(directory: Path, step_id: str, proof: Path) -> None:
    """A recovery directory whose committed sink state runs a shell command when read."""
    directory.mkdir()
    init_db_dir(directory, 1)  # type: ignore[no-untyped-call]
    (directory / "run-id").write_text("0badc0ffee00")
    with sqlite3.connect(directory / "part-0.sqlite3") as db:
        db.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1)")
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (0, 0, 9)")
        db.execute("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES "
                   "(?, '0', 1, ?)", (step_id, pickle.dumps(_Planted(proof))))  # fmt: skip


def test_no_command_unpickles_from_a_recovery_directory_named_inside_the_output(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    out, recovery = tmp_path / "out", tmp_path / "recovery"
    finished = eventlake(*monitoring(topic, out, broker, "--bounded", "--recovery-dir",
                                     str(recovery)))  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    table = out / "service_metrics"
    marker = json.loads((table / SINK_MARKER).read_text())
    proof = tmp_path / "code-ran"
    crafted = tmp_path / "crafted"
    _crafted_recovery_dir(crafted, marker["step_id"], proof)
    marker.update(recovery_dir=str(crafted), run="0badc0ffee00")
    (table / SINK_MARKER).write_text(json.dumps(marker))
    written = next(table.rglob("part-*.parquet"))
    for name in ("part-0badc0ffee00-000-00000000", "part-000-00000000"):  # as named before
        (table / ".pending" / name).mkdir(parents=True)
        (table / ".pending" / name / f"{name}-0000.parquet").hardlink_to(written)

    compacted = eventlake("compact", str(table))
    with_real = eventlake("compact", str(table), "--recovery-dir", str(recovery))
    status = eventlake("status", "--recovery-dir", str(recovery), "--out", str(out))

    assert not proof.exists(), "code from a crafted checkpoint ran"
    assert compacted.returncode == 0, compacted.stderr
    assert "left 1 pending rolls hidden: pass the --recovery-dir" in compacted.stderr
    assert with_real.returncode == 2
    assert f"written by another run than the one checkpointing in {recovery}" in with_real.stderr
    assert status.returncode == 0, status.stderr


def test_the_run_and_its_children_import_nothing_from_the_working_directory(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    """A project of the user's own with packages named like ours: before, the checkpoint
    helper ran its ``sinks/recovery_store.py`` and ``--processes 2`` failed on ``common``."""
    work = tmp_path / "project"
    proof = tmp_path / "code-ran"
    for package in ("common", "sinks", "flows", "sources"):
        (work / package).mkdir(parents=True)
        (work / package / "__init__.py").write_text(f"open({str(proof)!r}, 'w')\n")
    (work / "sinks" / "recovery_store.py").write_text(f"open({str(proof)!r}, 'w')\n")
    command = [EVENTLAKE_SCRIPT, *monitoring(topic, tmp_path / "out", broker, "--bounded",
               "--processes", "2", "--recovery-dir", str(tmp_path / "recovery"))]  # fmt: skip

    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stderr
    assert not proof.exists(), "a module of the working directory ran"
    assert table_rows(tmp_path / "out") > 0
