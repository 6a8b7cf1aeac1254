"""The status line and ``/metrics`` of a run, from figures recorded by hand (the CLI
tests in ``tests/flows/cli/test_watching_cli.py`` run real flows)."""

from __future__ import annotations

import contextlib
import io
import logging
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.log import LOGGER
from common.metrics import RunFigures, RunMetrics
from flows.runtime.metrics_endpoint import (
    MAX_CONNECTIONS,
    METRICS,
    REQUEST_TIMEOUT_S,
    health,
    serving_metrics,
)
from flows.runtime.status_line import (
    CHECKPOINT_REFRESH_S,
    STATUS_FORMAT_ENV,
    Checkpoint,
    CheckpointWatch,
    LiveRun,
    StatusLine,
    status_text,
)
from flows.runtime.supervisor import free_ports, status_report
from tests.helpers import http_get, metric_samples

README = Path(__file__).resolve().parents[2] / "README.md"
NOON_US = int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp() * 1e6)


def _figures() -> RunFigures:
    metrics = RunMetrics()
    metrics.opened(0, of=1, position=0, end=100, stop_at=100)
    metrics.read(0, events=40, position=40, dead_letters=2)
    metrics.gap(0, missing=5, position=45)
    metrics.shard("t", 0, watermark_us=NOON_US, open_windows=7, late_rows=3)
    metrics.rows("t", "0", 11)
    metrics.rows("late", "0", 3)
    return metrics.figures()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_says_whether_the_run_keeps_up() -> None:
    now = datetime(2024, 5, 1, 12, 10, tzinfo=UTC)
    checkpoint = Checkpoint(4, datetime(2024, 5, 1, 12, 9, 30, tzinfo=UTC))
    line = status_text("run x", _figures(), checkpoint, 1234.4, now)
    assert line == (
        "run x: 40/95 events, 1,234 events/s · lag 55 · watermark 2024-05-01 12:00:00 "
        "(10m00s behind) · open windows 7 · rows t 11 · late 3 · dead letters 2 · gaps 1 · "
        "checkpoint 4 (30s ago)"
    )
    unknown = status_text("run x", RunFigures(), None, 0.0, now)
    assert "lag ?" in unknown and "watermark none yet" in unknown and "checkpoint" not in unknown
    some = replace(_figures(), partition_count=4)  # a process of several reads partition 0
    assert "run x: 40 events, 0 events/s · lag 55 (1 of 4 partitions) ·" in status_text(
        "run x", some, None, 0.0, now
    )


def test_on_a_terminal_the_line_updates_in_place() -> None:
    terminal = _Terminal()
    with StatusLine("run x", LiveRun("x", "topic", _figures), 10.0, terminal) as status:
        time.sleep(1.2)  # a terminal's line is redrawn twice a second
        status.finish("done")
    shown = terminal.getvalue()
    assert shown.count("\r\033[K") >= 2 and "lag 55" in shown  # redrawn, then the last line
    assert shown.endswith("done\n") and "run x: 40/95 events" in shown.splitlines()[-1]


def test_elsewhere_it_is_logged_with_its_figures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER.name)
    run = LiveRun("x", "topic", _figures)
    with StatusLine("run x", run, 0.2, io.StringIO()):
        time.sleep(0.5)
    records = [record for record in caplog.records if hasattr(record, "status")]
    assert records and "lag 55" in records[0].getMessage()
    assert records[0].status["lag"] == 55 and records[0].status["rows"] == {"t": 11, "late": 3}


def test_a_failing_run_ends_the_line_and_reports_its_last_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    with pytest.raises(RuntimeError), StatusLine("run x", LiveRun("x", "t", _figures), 10.0,
                                                 terminal):  # fmt: skip
        time.sleep(0.7)
        raise RuntimeError("the run failed")
    assert terminal.getvalue().endswith("\n"), "the error must start a line of its own"
    monkeypatch.setenv(STATUS_FORMAT_ENV, "json")
    stream, figures = io.StringIO(), _figures()
    with pytest.raises(RuntimeError), StatusLine("run x", LiveRun("x", "t", lambda: figures),
                                                 10.0, stream):  # fmt: skip
        raise RuntimeError("the run failed")
    assert status_report(stream.getvalue()) == figures


def test_a_supervised_process_reports_figures_its_supervisor_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(STATUS_FORMAT_ENV, "json")
    stream, figures = io.StringIO(), _figures()
    StatusLine("run x", LiveRun("x", "topic", lambda: figures), 10.0, stream).finish()
    assert status_report(stream.getvalue()) == figures
    assert status_report("process said something else") is None


def test_health_fails_once_no_reader_has_polled_for_a_minute() -> None:
    figures = _figures()
    assert figures.active_at is not None
    assert health(figures, figures.active_at + 30) is None
    assert "no reader has polled Kafka for 90s" in str(health(figures, figures.active_at + 90))
    assert health(RunFigures(), 0.0) is None  # still starting


def test_metrics_are_served_with_their_labels_and_a_busy_port_is_refused() -> None:
    (port,), figures = free_ports(1), _figures()
    checkpoint = Checkpoint(4, datetime.now(UTC))
    run = LiveRun("x", "topic", lambda: figures, lambda: checkpoint)
    with serving_metrics("127.0.0.1", port, run):
        status, text = http_get(port, "/metrics")
        assert status == 200
        samples = metric_samples(text)
        part = (("flow", "x"), ("partition", "0"), ("topic", "topic"))
        table = (("flow", "x"), ("table", "t"))
        assert samples[("eventlake_events_total", part)] == 40
        assert samples[("eventlake_consumer_lag", part)] == 55
        assert samples[("eventlake_rows_total", table)] == 11
        assert samples[("eventlake_late_rows_total", table)] == 3
        assert samples[("eventlake_watermark_seconds", table)] == NOON_US / 1e6
        assert samples[("eventlake_checkpoint_epoch", (("flow", "x"),))] == 4
        assert http_get(port, "/healthz") == (200, "ok\n")
        busy = pytest.raises(ConfigError, match=f"--metrics-port {port}")
        with busy, serving_metrics("127.0.0.1", port, run):
            pass


def test_the_readme_lists_every_metric() -> None:
    readme = README.read_text()
    for served in METRICS:
        name = f"{served.name}_total" if served.kind == "counter" else served.name
        assert f"`{name}`" in readme, f"{name} is not in the README"


def test_the_readme_states_the_endpoints_limits() -> None:
    readme = README.read_text()
    assert f"at most {MAX_CONNECTIONS} connections at once" in readme
    assert f"{REQUEST_TIMEOUT_S:.0f} seconds to send its request" in readme


def test_checkpoints_that_cannot_be_read_are_reported_once_and_their_return_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER.name)
    partition = tmp_path / "part-0.sqlite3"
    with contextlib.closing(sqlite3.connect(partition)) as damaged:
        damaged.execute("CREATE TABLE unrelated (x)")
    with contextlib.closing(CheckpointWatch(tmp_path, in_flow=False)) as watch:
        for _ in range(2):  # two reads, one refresh apart
            assert watch.latest() is None
            time.sleep(CHECKPOINT_REFRESH_S)
        with contextlib.closing(sqlite3.connect(partition)) as repaired:
            repaired.executescript(
                "CREATE TABLE exs (ex_num, worker_count, resume_epoch);"
                "CREATE TABLE fronts (ex_num, worker_index, worker_frontier)"
            )
        assert watch.latest() is None
    said = [record for record in caplog.records if "checkpoint" in record.getMessage()]
    assert [record.levelno for record in said] == [logging.WARNING, logging.INFO]
    assert said[0].getMessage().startswith("cannot read the last checkpoint, so its figures")
    assert "no such table: exs" in said[0].getMessage()
    assert said[1].getMessage() == "the last checkpoint can be read again"
