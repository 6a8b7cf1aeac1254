"""Click options shared by the commands: every flag has an ``EVENTLAKE_*`` variable."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from common.errors import ConfigError
from common.units import parse_duration, parse_size, shown_duration, shown_size
from flows.runtime.checkpoints import DEFAULT_RECOVERY_PARTITIONS, Checkpointing
from flows.runtime.runner import Processes, parse_processes
from flows.runtime.settings import RunOptions, Runtime
from sinks.directories import PARTITION_BY, PartitionBy
from sinks.table_sink import COMPRESSIONS, RollingPolicy
from sources.broker import DEFAULT_STATE_FILE
from sources.event_time import DEFAULT_MAX_FUTURE_S
from sources.kafka_health import DEFAULT_ON_GAP, ON_GAP_CHOICES, OnGap
from sources.kafka_source import BATCH_SIZE
from sources.target import DEFAULT_BROKER_TIMEOUT_S

F = TypeVar("F", bound=Callable[..., Any])


def env_option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``EVENTLAKE_<env>`` and shows it and its default."""
    return click.option(
        *decls, envvar=f"EVENTLAKE_{env}", show_envvar=True, show_default=True, **kwargs
    )


class Duration(click.ParamType[float | None]):
    """A flag value like ``30s`` or ``5m``, converted to seconds; with ``allow_none``,
    ``none`` means no limit (None)."""

    name = "DURATION"

    def __init__(self, allow_none: bool = False) -> None:
        self.allow_none = allow_none

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or (self.allow_none and str(value).strip().lower() == "none"):
            return None
        try:
            return value if isinstance(value, float) else parse_duration(str(value)).total_seconds()
        except ConfigError as err:
            self.fail(str(err), param, ctx)


class ByteSize(click.ParamType[int]):
    """A flag value like ``128MB``, converted to bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return value if isinstance(value, int) else parse_size(str(value))
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


def _with_options(command: Callable[..., Any], options: list[Callable[[F], F]]) -> Any:
    for option in reversed(options):
        command = option(command)
    return command


def option_group(
    into: str, flags: list[Callable[[F], F]], make: Callable[..., Any]
) -> Callable[[Callable[..., Any]], Any]:
    """A decorator that adds ``flags`` to a command and passes it, as ``into``, what
    ``make`` builds of their values (``make``'s parameters are named after the flags)."""
    names = list(inspect.signature(make).parameters)

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def with_group(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(*args, **{into: make(**values)}, **kwargs)

        return _with_options(with_group, flags)

    return decorate


def _checkpointing(
    recovery_dir: Path | None,
    snapshot_interval: float,
    backup_interval: float,
    recovery_partitions: int,
) -> Checkpointing | None:
    """Where and how often to checkpoint; None without ``--recovery-dir``."""
    if recovery_dir is None:
        return None
    return Checkpointing(recovery_dir, snapshot_interval, backup_interval, recovery_partitions)


recovery_options = option_group(
    "checkpointing",
    [
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
            default=Checkpointing.snapshot_interval_s,
            help="How often state is snapshotted (seconds or with a unit).",
        ),
        env_option(
            "--backup-interval",
            env="BACKUP_INTERVAL",
            type=Duration(),
            default=Checkpointing.backup_interval_s,
            help="How long superseded snapshots are kept before cleanup.",
        ),
        env_option(
            "--recovery-partitions",
            env="RECOVERY_PARTITIONS",
            type=click.IntRange(min=1),
            default=DEFAULT_RECOVERY_PARTITIONS,
            help="Recovery partitions created on first use; at least the total worker "
            "count you will ever run with.",
        ),
    ],
    _checkpointing,
)
"""``--recovery-dir`` and the checkpoint intervals, passed as ``checkpointing``."""


def _rolling(
    file_rows: int,
    file_bytes: int,
    file_max_age: float,
    row_group_rows: int,
    compression: str,
    partition_by: PartitionBy,
) -> RollingPolicy:
    """How output files are cut and written."""
    return RollingPolicy(
        file_rows, file_bytes, file_max_age, row_group_rows, compression, partition_by
    )


rolling_options = option_group(
    "rolling",
    [
        env_option(
            "--file-rows",
            env="FILE_ROWS",
            type=click.IntRange(min=1),
            default=RollingPolicy.max_rows,
            help="Cut an output file once this many rows are buffered.",
        ),
        env_option(
            "--file-bytes",
            env="FILE_BYTES",
            type=ByteSize(),
            default=shown_size(RollingPolicy.max_bytes),
            help="Cut an output file once its buffered rows take this much memory "
            "(e.g. 64MB; binary units).",
        ),
        env_option(
            "--file-max-age",
            env="FILE_MAX_AGE",
            type=Duration(),
            default=RollingPolicy.max_age_s,
            help="Cut an output file once its oldest row has waited this long (seconds or a unit).",
        ),
        env_option(
            "--row-group-rows",
            env="ROW_GROUP_ROWS",
            type=click.IntRange(min=1),
            default=RollingPolicy.row_group_rows,
            help="Rows per Parquet row group.",
        ),
        env_option(
            "--compression",
            env="COMPRESSION",
            type=click.Choice(COMPRESSIONS),
            default=RollingPolicy.compression,
            help="Parquet compression codec.",
        ),
        env_option(
            "--partition-by",
            env="PARTITION_BY",
            type=click.Choice(PARTITION_BY),
            default=RollingPolicy.partition_by,
            help="Hive directories of output tables by their time column: date=/ (day), "
            "date=/hour=/ (hour) or none; fixed for a run's recovery directory.",
        ),
    ],
    _rolling,
)
"""How output files are cut and written, passed as ``rolling``."""


def _processes(spawn: int, process_id: int | None, addresses: str | None) -> Processes:
    """This process's place in the run (see :func:`parse_processes`)."""
    return parse_processes(process_id, addresses, spawn)


cluster_options = option_group(
    "processes",
    [
        env_option(
            "--processes",
            "spawn",
            env="PROCESSES",
            type=click.IntRange(min=1),
            default=Processes.spawn,
            help="Start this many local processes of one run (free ports on localhost) "
            "and supervise them: one fails, all stop.",
        ),
        env_option(
            "-i",
            "--process-id",
            env="PROCESS_ID",
            type=click.IntRange(min=0),
            default=None,
            help="This process's index in --addresses (multi-process runs). [default: 0]",
        ),
        env_option(
            "-a",
            "--addresses",
            env="ADDRESSES",
            default=None,
            help="HOST:PORT of every process of the run, separated by ';', the same "
            "list in each process (runs over several hosts). [default: a single process]",
        ),
    ],
    _processes,
)
"""``--processes``, or ``--process-id`` and ``--addresses`` of a multi-process run,
passed as ``processes``."""


_RUNTIME_FLAGS: list[Callable[[F], F]] = [
    env_option(
        "--out",
        env="OUT",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("output"),
        help="Output directory; tables go under OUT/<table>/.",
    ),
    env_option(
        "--bounded/--unbounded",
        env="BOUNDED",
        default=False,
        help="Stop at the end offsets present at start, emitting every window.",
    ),
    env_option(
        "--workers",
        env="WORKERS",
        type=click.IntRange(1, 64),
        default=RunOptions.workers,
        help="bytewax worker threads in this process.",
    ),
    env_option(
        "--max-future",
        env="MAX_FUTURE",
        type=Duration(allow_none=True),
        default=shown_duration(DEFAULT_MAX_FUTURE_S),
        help="Events further ahead of the wall clock than this are dead letters, so one "
        "bad clock cannot become the watermark; `none` turns the check off.",
    ),
    env_option(
        "--on-gap",
        env="ON_GAP",
        type=click.Choice(ON_GAP_CHOICES),
        default=DEFAULT_ON_GAP,
        help="When offsets were deleted (retention) before the flow read them: record them "
        "in OUT/gaps and read on (continue), or stop with exit 1 (fail).",
    ),
    env_option(
        "--broker-timeout",
        env="BROKER_TIMEOUT",
        type=Duration(),
        default=shown_duration(DEFAULT_BROKER_TIMEOUT_S),
        help="How long to keep retrying at start while Kafka does not answer; an outage "
        "during a run is always waited out.",
    ),
    env_option(
        "--idle-timeout",
        env="IDLE_TIMEOUT",
        type=Duration(),
        default=RunOptions.idle_timeout_s,
        help="Wall-clock time without messages after which a partition stops holding the "
        "watermark back (unbounded runs only; the one setting that is not deterministic).",
    ),
    env_option(
        "--batch-size",
        env="BATCH_SIZE",
        type=click.IntRange(min=1),
        default=BATCH_SIZE,
        help="Most messages per batch (one consume call on one partition).",
    ),
]
"""The flags of :func:`runtime_options` itself; the option groups add the rest."""


def _runtime(
    out: Path,
    bounded: bool,
    workers: int,
    max_future: float | None,
    idle_timeout: float | None,
    batch_size: int,
    rolling: RollingPolicy,
    checkpointing: Checkpointing | None,
    processes: Processes,
    brokers: str | None,
    state_file: Path,
    on_gap: OnGap,
    broker_timeout: float,
) -> Runtime:
    """The run options; ConfigError if ``--out`` is a file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a directory")
    return Runtime(
        out=out, bounded=bounded, workers=workers, max_future_s=max_future,
        idle_timeout_s=idle_timeout, batch_size=batch_size, rolling=rolling,
        checkpointing=checkpointing, processes=processes, on_gap=on_gap, brokers=brokers,
        state_file=state_file, broker_timeout_s=broker_timeout,
    )  # fmt: skip


def runtime_options(command: Callable[..., Any]) -> Any:
    """Where output goes and how the run goes (workers, files, checkpoints, processes,
    cluster), passed to ``command`` as ``runtime``."""
    decorated = option_group("runtime", _RUNTIME_FLAGS, _runtime)(command)
    groups = (state_file_option, brokers_option, cluster_options, recovery_options)
    for group in (*groups, rolling_options):
        decorated = group(decorated)
    return decorated
