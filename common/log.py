"""Logging: everything a command says that is not its own output (notes on resumes,
outages, gaps, locks) goes through the ``eventlake`` logger.

By default records at INFO and above are written to the standard error as bare
messages, above any progress line being updated; ``--log-level`` (or
``EVENTLAKE_LOG_LEVEL``) changes the threshold.
"""

from __future__ import annotations

import logging

from common.progress import note

LOGGER = logging.getLogger("eventlake")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"


class _AboveProgress(logging.Handler):
    """Writes each record as a bare line to the current standard error, above any
    progress line (:func:`common.progress.note`)."""

    def emit(self, record: logging.LogRecord) -> None:
        note(self.format(record))


def set_log_level(level: str) -> None:
    """Show records at ``level`` (one of :data:`LOG_LEVELS`) and above."""
    LOGGER.setLevel(level.upper())


LOGGER.addHandler(_AboveProgress())
LOGGER.propagate = False
set_log_level(DEFAULT_LOG_LEVEL)
