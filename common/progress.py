"""Progress on one updating line, for every long-running command."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from common.secrets import scrub

_TTY_INTERVAL_S = 0.5
_LOG_INTERVAL_S = 5.0
REDRAW = "\r\033[K"
"""Back to the start of a terminal's line, and clear it: what an updating line starts with."""


def note(line: str, stream: IO[str] | None = None) -> None:
    """Print ``line`` on a line of its own (on stderr by default), above a progress
    line being updated. Diagnostics go through :mod:`common.log` instead."""
    stream, line = stream or sys.stderr, scrub(line)
    stream.write(f"{REDRAW}{line}\n" if stream.isatty() else f"{line}\n")
    stream.flush()


class Progress:
    """Counts units of work and shows ``label: N events, R/s`` while it runs.

    On a terminal the line updates in place; elsewhere (CI logs, pipes) a new
    line is written every few seconds. Thread-safe: threads may share one instance.
    ``finish`` prints the summary line. (A flow's run shows a status line instead:
    :mod:`flows.runtime.status_line`.)
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "events",
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.count = 0
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._last_shown = self._started
        self._tty = stream.isatty()
        self._interval = _TTY_INTERVAL_S if self._tty else _LOG_INTERVAL_S
        self._lock = threading.Lock()

    def advance(self, units: int) -> None:
        """Add ``units`` done; redraw if the display interval has passed."""
        with self._lock:
            self.count += units
            now = self._clock()
            if now - self._last_shown >= self._interval:
                self._last_shown = now
                self._show(self._line(now), final=False)

    def expect(self, units: int) -> None:
        """Add ``units`` to the total shown, for work whose size is learnt piecewise."""
        with self._lock:
            self.total = (self.total or 0) + units

    @property
    def elapsed_s(self) -> float:
        """Seconds since this progress started."""
        return self._clock() - self._started

    def finish(self, summary: str = "") -> None:
        """Print the final line: counts, elapsed time, rate, and ``summary``."""
        with self._lock:
            line = f"{self._line(self._clock())} in {self.elapsed_s:.1f}s"
            self._show(f"{line}. {summary}" if summary else line, final=True)

    def _line(self, now: float) -> str:
        elapsed = now - self._started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        done = f"{self.count:,}" if self.total is None else f"{self.count:,}/{self.total:,}"
        return f"{self.label}: {done} {self.unit}, {rate:,.0f} {self.unit}/s"

    def _show(self, line: str, final: bool) -> None:
        line = scrub(line)
        if self._tty:
            end = "\n" if final else ""
            self._stream.write(f"{REDRAW}{line}{end}")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
