"""Logging: everything a command says that is not its own output (notes on resumes,
outages, gaps, locks) goes through the ``eventlake`` logger.

Commands write records at INFO and above to the standard error as bare messages,
above any progress line being updated (:func:`configure_logging`); ``--log-level``
(or ``EVENTLAKE_LOG_LEVEL``) changes the threshold. As a library it adds no handler
but a ``NullHandler``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from common.progress import note
from common.secrets import scrub

LOGGER = logging.getLogger("eventlake")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"


class _JsonLines(logging.Formatter):
    """One JSON object per record, for log collectors: ``time`` (UTC, ISO 8601),
    ``level``, ``logger`` and ``message`` (secrets masked before encoding), and a status
    line's figures as ``status`` (given as ``extra={"status": ...}``)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields = {"time": moment, "level": record.levelname.lower(), "logger": record.name}
        status = getattr(record, "status", None)
        extra = {} if status is None else {"status": status}
        return json.dumps({**fields, "message": scrub(record.getMessage()), **extra})


class _AboveProgress(logging.Handler):
    """Writes each record as a bare line to the current standard error, above any
    progress line (:func:`common.progress.note`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            note(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(level: str = DEFAULT_LOG_LEVEL, log_format: str = DEFAULT_LOG_FORMAT) -> None:
    """What every command does first: show the ``eventlake`` logger's records at
    ``level`` (one of :data:`LOG_LEVELS`) and above on stderr, as bare messages or JSON
    lines (``log_format``, one of :data:`LOG_FORMATS`). A program that embeds a flow
    configures logging its own way instead."""
    handler = next((h for h in LOGGER.handlers if isinstance(h, _AboveProgress)), None)
    if handler is None:
        handler = _AboveProgress()
        LOGGER.addHandler(handler)
    handler.setFormatter(_JsonLines() if log_format == "json" else logging.Formatter())
    LOGGER.setLevel(level.upper())


LOGGER.addHandler(logging.NullHandler())
