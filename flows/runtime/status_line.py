"""A running flow's status: one line that answers "is it keeping up?".

Events and events/s, consumer lag, the watermark and how far it trails the wall
clock, open windows, rows per table, late rows, dead letters, gaps, and the last
durable checkpoint. On a terminal the line updates in place; elsewhere it is logged
every ``--status-interval``. A process of a multi-process run writes its figures as
JSON lines instead, which the supervisor merges into one line (and one ``/metrics``).
"""

from __future__ import annotations

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
    :data:`CHECKPOINT_REFRESH_S`; thread-safe. Call :meth:`close` when done."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._store = RecoveryStore(directory, in_flow=True)
        self._latest: Checkpoint | None = None
        self._read_at = -CHECKPOINT_REFRESH_S
        self._lock = threading.Lock()

    def latest(self) -> Checkpoint | None:
        """The checkpoint a crash would resume from; None before the first."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= CHECKPOINT_REFRESH_S:
                self._read_at = now
                self._latest = self._read()
            return self._latest

    def _read(self) -> Checkpoint | None:
        resume_epoch, written_at = self._store.resume_epoch(), last_written(self._directory)
        if resume_epoch is None or resume_epoch <= 1 or written_at is None:
            return None  # bytewax resumes at the epoch after the last durable one
        return Checkpoint(resume_epoch - 1, written_at)

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
    total = figures.total()
    done = f"{figures.events():,}" + ("" if total is None else f"/{total:,}")
    lag = figures.lag()
    parts = [f"{label}: {done} events, {rate:,.0f} events/s",
             "lag ?" if lag is None else f"lag {lag:,}"]  # fmt: skip
    marks = figures.watermarks_us()
    parts.append(_watermark(min(marks.values()), now) if marks else "watermark none yet")
    parts.append(f"open windows {sum(figures.per_table('open_windows').values()):,}")
    rows = ", ".join(f"{table} {count:,}" for table, count in figures.table_rows().items()
                     if table not in SHARED_TABLES)  # fmt: skip
    parts.append(f"rows {rows or 'none yet'}")
    parts.append(f"late {sum(figures.per_table('late_rows').values()):,}")
    parts.append(f"dead letters {figures.per_partition('dead_letters'):,}")
    parts.append(f"gaps {figures.per_partition('gaps'):,}")
    if checkpoint is not None:
        age = shown_age((now - checkpoint.written_at).total_seconds())
        parts.append(f"checkpoint {checkpoint.epoch} ({age} ago)")
    return " · ".join(parts)


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

    def __enter__(self) -> StatusLine:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def events(self) -> int:
        """Events read so far."""
        return self._run.figures().events()

    def finish(self, summary: str = "") -> None:
        """Stop updating and print the final line: events, time, average rate, ``summary``."""
        self.__exit__()
        figures = self._run.figures()
        if self._json:
            self._write(json.dumps({"status": figures.to_json()}))
            return
        elapsed = time.monotonic() - self._started
        events = figures.events()
        line = f"{self._label}: {events:,} events, {events / max(elapsed, 1e-9):,.0f} events/s"
        line = f"{line} in {elapsed:.1f}s"
        self._write(scrub(f"{line}. {summary}" if summary else line))

    def _keep_showing(self) -> None:
        while not self._stopped.wait(self._interval):
            self._show()

    def _show(self) -> None:
        figures = self._run.figures()
        if self._json:
            self._write(json.dumps({"status": figures.to_json()}))
            return
        now = time.monotonic()
        line = status_text(self._label, figures, self._run.checkpoint(),
                           self._rate(now, figures.events()), datetime.now(UTC))  # fmt: skip
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write(f"\r\033[K{scrub(line)[:width]}")
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
        prefix = "\r\033[K" if self._tty else ""
        self._stream.write(f"{prefix}{line}\n")
        self._stream.flush()


def _status_fields(figures: RunFigures) -> dict[str, Any]:
    """The status line's main figures, for JSON log lines."""
    marks = figures.watermarks_us()
    return {
        "events": figures.events(),
        "lag": figures.lag(),
        "watermark_us": min(marks.values()) if marks else None,
        "rows": figures.table_rows(),
        "late": sum(figures.per_table("late_rows").values()),
        "dead_letters": figures.per_partition("dead_letters"),
        "gaps": figures.per_partition("gaps"),
    }
