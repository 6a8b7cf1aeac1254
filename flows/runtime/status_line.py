"""A running flow's status: one line that answers "is it keeping up?".

Events and events/s, consumer lag, the watermark and how far it trails the wall
clock, open windows, rows per table, late rows, dead letters, gaps, and the last
durable checkpoint. On a terminal the line updates in place; elsewhere it is logged
every ``--status-interval``. A process of a multi-process run writes its figures as
JSON lines instead, which the supervisor merges into one line (and one ``/metrics``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from common.log import LOGGER
from common.metrics import RunFigures
from common.progress import REDRAW
from common.secrets import scrub
from common.units import MICROS_PER_SECOND, shown_age
from flows.runtime.checkpoints import last_written
from flows.runtime.dataflow import SHARED_TABLES
from sinks.recovery_store import RecoveryStore

STATUS_FORMAT_ENV = "EVENTLAKE_STATUS_FORMAT"
"""Set to ``json`` (by a supervising process): the status is written as JSON lines
``{"status": figures}`` every :data:`JSON_INTERVAL_S` instead of text."""
JSON_INTERVAL_S = 1.0
TTY_INTERVAL_S = 0.5
RATE_WINDOW_S = 5.0
"""events/s is measured over at least this long (since the start, at first)."""
CHECKPOINT_REFRESH_S = 1.0


@dataclass(frozen=True)
class Checkpoint:
    """The last durable checkpoint: its epoch and when it was written."""

    epoch: int
    written_at: datetime


class CheckpointWatch:
    """The last durable checkpoint in a recovery directory, read at most every
    :data:`CHECKPOINT_REFRESH_S`; thread-safe. Call :meth:`close` when done.

    A checkpoint's time is when this watch first saw it (within the refresh), or, for
    the one found at start, when the recovery partitions were last written.
    """

    def __init__(self, directory: Path, in_flow: bool = True) -> None:
        self._directory = directory
        self._store = RecoveryStore(directory, in_flow)
        self._reopen = not in_flow
        """Outside a flow the partitions may still be being created: look again each time."""
        self._latest: Checkpoint | None = None
        self._read_at = -CHECKPOINT_REFRESH_S
        self._failing = False
        self._lock = threading.Lock()

    def latest(self) -> Checkpoint | None:
        """The checkpoint a crash would resume from; None before the first. A failed
        read keeps the last one known (it is only for display), with a warning when
        reads start failing and a note when they work again."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= CHECKPOINT_REFRESH_S:
                self._read_at = now
                self._refresh()
                if self._reopen:
                    self._store.close()
            return self._latest

    def _refresh(self) -> None:
        try:
            self._latest = self._read()
        except Exception as err:  # display must never end a run
            if not self._failing:
                LOGGER.warning(
                    "cannot read the last checkpoint, so its figures stand still (trying "
                    "again every %.0fs): %s", CHECKPOINT_REFRESH_S, err,
                )  # fmt: skip
            self._failing = True
            return
        if self._failing:
            LOGGER.info("the last checkpoint can be read again")
        self._failing = False

    def _read(self) -> Checkpoint | None:
        resume_epoch = self._store.resume_epoch()
        if resume_epoch is None or resume_epoch <= 1:
            return None  # bytewax resumes at the epoch after the last durable one
        epoch, known = resume_epoch - 1, self._latest
        if known is not None and known.epoch == epoch:
            return known
        written_at = datetime.now(UTC) if known is not None else last_written(self._directory)
        return Checkpoint(epoch, written_at or datetime.now(UTC))

    def close(self) -> None:
        """Release the recovery store."""
        self._store.close()


@dataclass(frozen=True)
class LiveRun:
    """What the status line and ``/metrics`` read of a running flow."""

    flow: str
    topic: str
    figures: Callable[[], RunFigures]
    """The run's figures now (this process's, or every process's merged)."""
    checkpoint: Callable[[], Checkpoint | None] = lambda: None
    """The last durable checkpoint (:meth:`CheckpointWatch.latest`); None without
    checkpoints or before the first."""


def status_text(
    label: str, figures: RunFigures, checkpoint: Checkpoint | None, rate: float, now: datetime
) -> str:
    """The status line of a run with ``figures``, reading ``rate`` events/s at ``now``."""
    parts = [f"{label}: {_done(figures)} events, {rate:,.0f} events/s", _lag(figures)]
    watermark = figures.watermark_us()
    parts.append("watermark none yet" if watermark is None else _watermark(watermark, now))
    parts.append(f"open windows {figures.per_shard('open_windows'):,}")
    rows = ", ".join(f"{table} {count:,}" for table, count in figures.table_rows().items()
                     if table not in SHARED_TABLES)  # fmt: skip
    parts.append(f"rows {rows or 'none yet'}")
    parts.append(f"late {figures.per_shard('late_rows'):,}")
    parts.append(f"dead letters {figures.per_partition('dead_letters'):,}")
    parts.append(f"gaps {figures.per_partition('gaps'):,}")
    if checkpoint is not None:
        age = shown_age((now - checkpoint.written_at).total_seconds())
        parts.append(f"checkpoint {checkpoint.epoch} ({age} ago)")
    return " · ".join(parts)


def _lag(figures: RunFigures) -> str:
    """The lag, and over how many partitions unless over all."""
    lag = figures.lag()
    if lag is None:
        return "lag ?"
    if figures.complete():
        return f"lag {lag:,}"
    return f"lag {lag:,} ({len(figures.partitions)} of {figures.partition_count} partitions)"


def _done(figures: RunFigures) -> str:
    """Events read, and of how many when the run is bounded."""
    total = figures.total()
    return f"{figures.events():,}" + ("" if total is None else f"/{total:,}")


def _watermark(watermark_us: int, now: datetime) -> str:
    moment = datetime.fromtimestamp(watermark_us / MICROS_PER_SECOND, UTC)
    trail = (now - moment).total_seconds()
    behind = f"{shown_age(trail)} behind" if trail >= 0 else "ahead of the clock"
    return f"watermark {moment:%Y-%m-%d %H:%M:%S} ({behind})"


class StatusLine:
    """Shows a running flow's status on ``stream`` from entering until :meth:`finish`
    (see the module)."""

    def __init__(
        self, label: str, run: LiveRun, interval_s: float, stream: IO[str] = sys.stderr
    ) -> None:
        self._label = label
        self._run = run
        self._stream = stream
        self._json = os.environ.get(STATUS_FORMAT_ENV) == "json"
        self._tty = stream.isatty() and not self._json
        self._interval = interval_s
        if self._json or self._tty:
            self._interval = JSON_INTERVAL_S if self._json else TTY_INTERVAL_S
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._keep_showing, daemon=True)
        self._finished = False

    def __enter__(self) -> StatusLine:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop updating; if the run failed before :meth:`finish`, end the line (a
        supervisor gets the last figures) so that the error starts a line of its own."""
        self._stop()
        if not self._finished:
            self._finished = True
            if self._json:
                self._write(self._report(self._run.figures()))
            elif self._tty:
                self._write("")

    def figures(self) -> RunFigures:
        """The run's figures now."""
        return self._run.figures()

    def finish(self, summary: str = "") -> None:
        """Stop updating and print the final line: events, time, average rate, ``summary``."""
        self._stop()
        self._finished = True
        figures = self._run.figures()
        if self._json:
            self._write(self._report(figures))
            return
        elapsed = time.monotonic() - self._started
        rate = figures.events() / max(elapsed, 1e-9)
        line = f"{self._label}: {_done(figures)} events, {rate:,.0f} events/s in {elapsed:.1f}s"
        self._write(scrub(f"{line}. {summary}" if summary else line))

    def _stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _keep_showing(self) -> None:
        failed = False
        while not self._stopped.wait(self._interval):
            try:
                self._show()
            except Exception as err:  # display must never end a run
                if not failed:
                    LOGGER.warning("the status line failed, and goes on trying: %s", err)
                failed = True

    @staticmethod
    def _report(figures: RunFigures) -> str:
        return json.dumps({"status": figures.to_json()})

    def _show(self) -> None:
        figures = self._run.figures()
        if self._json:
            self._write(self._report(figures))
            return
        now = time.monotonic()
        line = status_text(self._label, figures, self._run.checkpoint(),
                           self._rate(now, figures.events()), datetime.now(UTC))  # fmt: skip
        if self._tty:
            width = _columns(self._stream) - 1
            self._stream.write(f"{REDRAW}{scrub(line)[:width]}")
            self._stream.flush()
        else:
            LOGGER.info("%s", line, extra={"status": _status_fields(figures)})

    def _rate(self, now: float, events: int) -> float:
        """events/s over the last :data:`RATE_WINDOW_S` or more."""
        while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        at, count = self._samples[0]
        self._samples.append((now, events))
        return (events - count) / (now - at) if now > at else 0.0

    def _write(self, line: str) -> None:
        prefix = REDRAW if self._tty else ""
        self._stream.write(f"{prefix}{line}\n")
        self._stream.flush()


def _columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` writes to."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size().columns


def _status_fields(figures: RunFigures) -> dict[str, Any]:
    """The status line's main figures, for JSON log lines."""
    return {
        "events": figures.events(),
        "lag": figures.lag(),
        "watermark_us": figures.watermark_us(),
        "rows": figures.table_rows(),
        "late": figures.per_shard("late_rows"),
        "dead_letters": figures.per_partition("dead_letters"),
        "gaps": figures.per_partition("gaps"),
    }
