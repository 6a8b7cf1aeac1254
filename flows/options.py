"""Click options shared by the commands: every flag has an ``EVENTLAKE_*`` variable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from flows.durations import parse_duration
from flows.recovery import DEFAULT_RECOVERY_PARTITIONS
from sources.broker import DEFAULT_STATE_FILE
from sources.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def env_option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``EVENTLAKE_<env>`` and shows it and its default."""
    return click.option(
        *decls, envvar=f"EVENTLAKE_{env}", show_envvar=True, show_default=True, **kwargs
    )


class Duration(click.ParamType[float]):
    """A flag value like ``30s`` or ``5m``, converted to seconds."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return parse_duration(str(value)).total_seconds()
        except ConfigError as err:
            self.fail(str(err), param, ctx)


class UtcTime(click.ParamType[datetime]):
    """A flag value in ISO-8601 with a timezone, converted to an aware datetime."""

    name = "ISO-8601"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not ISO-8601, e.g. 2024-05-01T13:00:00Z", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no timezone; add Z or an offset like +02:00", param, ctx)
        return parsed


brokers_option = env_option(
    "--brokers",
    env="BROKERS",
    default=None,
    help="Kafka bootstrap servers HOST:PORT[,...]. [default: the running `eventlake broker`]",
)
state_file_option = env_option(
    "--state-file",
    env="STATE_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_STATE_FILE,
    help="Where `eventlake broker` records its address.",
)


def recovery_options(command: F) -> F:
    """``--recovery-dir`` and the checkpoint intervals, on ``command``."""
    decorators = [
        env_option(
            "--recovery-dir",
            env="RECOVERY_DIR",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Checkpoint here and resume from here after a crash. [default: no "
            "checkpoints: a crash loses the run's progress]",
        ),
        env_option(
            "--snapshot-interval",
            env="SNAPSHOT_INTERVAL",
            type=Duration(),
            default=10.0,
            help="How often state is snapshotted (seconds or with a unit).",
        ),
        env_option(
            "--backup-interval",
            env="BACKUP_INTERVAL",
            type=Duration(),
            default=30.0,
            help="How long superseded snapshots are kept before cleanup.",
        ),
        env_option(
            "--recovery-partitions",
            env="RECOVERY_PARTITIONS",
            type=click.IntRange(min=1),
            default=DEFAULT_RECOVERY_PARTITIONS,
            help="Recovery partitions created on first use; at least the total worker count "
            "you will ever run with.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command
