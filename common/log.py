"""Logging: everything a command says that is not its own output (notes on resumes,
outages, gaps, locks) goes through the ``eventlake`` logger.

Commands write records at INFO and above to the standard error as bare messages,
above any progress line being updated (:func:`configure_logging`); ``--log-level``
(or ``EVENTLAKE_LOG_LEVEL``) changes the threshold. As a library it adds no handler
but a ``NullHandler``.
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
        try:
            note(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(level: str = DEFAULT_LOG_LEVEL) -> None:
    """What every command does first: show the ``eventlake`` logger's records at
    ``level`` (one of :data:`LOG_LEVELS`) and above on stderr. A program that embeds a
    flow configures logging its own way instead."""
    if not any(isinstance(handler, _AboveProgress) for handler in LOGGER.handlers):
        LOGGER.addHandler(_AboveProgress())
    LOGGER.setLevel(level.upper())


LOGGER.addHandler(logging.NullHandler())
