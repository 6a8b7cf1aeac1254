"""Click options shared by the commands: every flag has an ``EVENTLAKE_*`` variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from common.errors import ConfigError
from common.units import shown_duration, shown_size
from flows.cli.params import ByteSize, Duration, Flag, env_option, option_group
from flows.runtime.checkpoints import DEFAULT_RECOVERY_PARTITIONS, Checkpointing
from flows.runtime.runner import Processes, parse_processes
from flows.runtime.settings import RunOptions, Runtime, Watching
from sinks.directories import PARTITION_BY, PartitionBy
from sinks.table_sink import COMPRESSIONS, RollingPolicy
from sources.broker import DEFAULT_STATE_FILE
from sources.event_time import DEFAULT_MAX_FUTURE_S
from sources.kafka_config import parse_assignments, read_properties
from sources.kafka_health import DEFAULT_ON_GAP, ON_GAP_CHOICES, OnGap
from sources.kafka_source import BATCH_SIZE
from sources.target import DEFAULT_BROKER_TIMEOUT_S

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
            default=shown_duration(Checkpointing.snapshot_interval_s),
            help="How often state is snapshotted (seconds or with a unit).",
        ),
        env_option(
            "--backup-interval",
            env="BACKUP_INTERVAL",
            type=Duration(),
            default=shown_duration(Checkpointing.backup_interval_s),
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


partition_by_option = env_option(
    "--partition-by",
    env="PARTITION_BY",
    type=click.Choice(PARTITION_BY),
    default=RollingPolicy.partition_by,
    help="Hive directories of output tables by their time column: date=/ (day), "
    "date=/hour=/ (hour) or none; fixed for a run's recovery directory.",
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
            default=shown_duration(RollingPolicy.max_age_s),
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
        partition_by_option,
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


def _kafka(kafka_config: Path | None, client_setting: tuple[str, ...]) -> dict[str, str]:
    """Client settings: the properties file's, then ``-X`` (the command line wins)."""
    from_file = read_properties(kafka_config) if kafka_config is not None else {}
    return {**from_file, **parse_assignments(client_setting)}


kafka_options = option_group(
    "kafka",
    [
        env_option(
            "--kafka-config",
            env="KAFKA_CONFIG",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="librdkafka settings for every Kafka client, from a Java properties file "
            "as Kafka's tools and kcat read (SASL, SSL, timeouts); the place for "
            "credentials, since command lines end up in shell history. [default: none]",
        ),
        env_option(
            "-X",
            "client_setting",
            env="X",
            multiple=True,
            default=None,
            metavar="KEY=VALUE",
            help="One librdkafka setting for every Kafka client (repeatable); wins over "
            "--kafka-config. [default: none]",
        ),
    ],
    _kafka,
)
"""``--kafka-config`` and ``-X``, passed as ``kafka``: librdkafka client settings."""


_RUNTIME_FLAGS: list[Flag[Any]] = [
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
        help="Stop at the end offsets present at start. With --recovery-dir, windows "
        "still open stay in the checkpoint and the next run continues them; without it "
        "(or with --final), every window is emitted.",
    ),
    env_option(
        "--final/--no-final",
        env="FINAL",
        default=RunOptions.final,
        help="With --bounded --recovery-dir: the last run over a finite topic; emit every "
        "window still open at the end instead of keeping it for a next run.",
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
        default=shown_duration(RunOptions.idle_timeout_s),
        help="Wall-clock time without messages after which a partition stops holding the "
        "watermark back (unbounded runs only; the one setting that is not deterministic).",
    ),
    env_option(
        "--group",
        env="GROUP",
        default=None,
        help="Kafka consumer group to commit the run's offsets to, so that Kafka's lag tools "
        "(kafka-consumer-groups, Burrow) see it; the checkpoint stays what a resume reads. "
        "[default: eventlake-<flow>-<topic>]",
    ),
    env_option(
        "--commit/--no-commit",
        "commit_offsets",
        env="COMMIT",
        default=RunOptions.commit_offsets,
        help="Commit offsets to --group: after each durable checkpoint; without "
        "--recovery-dir, once a bounded run has written every table.",
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
    final: bool,
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
    kafka: dict[str, str],
    group: str | None,
    commit_offsets: bool,
    watching: Watching,
) -> Runtime:
    """The run options; ConfigError if ``--out`` is a file or ``--final`` comes without
    ``--bounded``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a directory")
    if final and not bounded:
        raise ConfigError(
            "--final closes every window at the end of a bounded run; add --bounded, or "
            "drop --final (an unbounded run emits each window when the watermark passes it)"
        )
    return Runtime(
        out=out, bounded=bounded, final=final, workers=workers, max_future_s=max_future,
        idle_timeout_s=idle_timeout, batch_size=batch_size, rolling=rolling,
        checkpointing=checkpointing, processes=processes, on_gap=on_gap, brokers=brokers,
        state_file=state_file, broker_timeout_s=broker_timeout, kafka=kafka, group=group,
        commit_offsets=commit_offsets, watching=watching,
    )  # fmt: skip


watching_options = option_group(
    "watching",
    [
        env_option(
            "--status-interval",
            env="STATUS_INTERVAL",
            type=Duration(),
            default=shown_duration(Watching.status_interval_s),
            help="How often the status line (events/s, lag, watermark, windows, rows, "
            "checkpoint) is logged when stderr is not a terminal; on one it updates in place.",
        ),
        env_option(
            "--metrics-port",
            env="METRICS_PORT",
            type=click.IntRange(1, 65535),
            default=None,
            help="Serve the run's figures as Prometheus metrics on :PORT/metrics, and "
            "/healthz for liveness probes. [default: none]",
        ),
    ],
    lambda status_interval, metrics_port: Watching(status_interval, metrics_port),
)
"""``--status-interval`` and ``--metrics-port``, passed as ``watching``."""


def runtime_options(command: Callable[..., Any]) -> Any:
    """Where output goes and how the run goes (workers, files, checkpoints, processes,
    cluster), passed to ``command`` as ``runtime``."""
    decorated = option_group("runtime", _RUNTIME_FLAGS, _runtime)(command)
    groups = (state_file_option, brokers_option, kafka_options, cluster_options, recovery_options)
    for group in (*groups, rolling_options, watching_options):
        decorated = group(decorated)
    return decorated
