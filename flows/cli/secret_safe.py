"""Keeping Kafka secrets out of what the command line prints at its edges: click's usage
errors, which quote the arguments they cannot parse, and unexpected tracebacks."""

from __future__ import annotations

import io
import os
import sys
import traceback
from types import TracebackType

import click

from common.secrets import remember_command_line, scrub, scrub_arguments
from flows.cli.params import ENV_PREFIX
from sources.kafka_config import setting_lines


def guard_secrets() -> None:
    """Before anything parses the command line: remember the secrets in its arguments and
    in every ``EVENTLAKE_*`` variable (see :func:`remember_command_line`), so that no
    error can show one, and scrub the traceback of any unexpected error."""
    sys.excepthook = _scrubbed_traceback
    values = (value for name, value in os.environ.items() if name.startswith(ENV_PREFIX))
    remember_command_line([*sys.argv[1:], *(line for v in values for line in setting_lines(v))])


def show_usage_error(error: click.ClickException) -> None:
    """Print a click usage error as click does, without the value of any Kafka secret
    (``Got unexpected extra argument (sasl.password=***)``)."""
    shown = io.StringIO()
    error.show(file=shown)
    sys.stderr.write(scrub_arguments(shown.getvalue()))


def _scrubbed_traceback(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """An unexpected error's traceback, without the value of any Kafka secret."""
    print(scrub("".join(traceback.format_exception(kind, error, trace))), file=sys.stderr)
