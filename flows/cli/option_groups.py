"""Option groups of ``run`` and ``aggregate``: each a set of flags that becomes one
settings object (checkpointing, rolling, cluster, Kafka client settings, watching)."""

from __future__ import annotations

from pathlib import Path

import click

from common.units import shown_duration, shown_size
from flows.cli.params import ByteSize, ClientSetting, Duration, env_option, option_group
from flows.runtime.checkpoints import DEFAULT_RECOVERY_PARTITIONS, Checkpointing
from flows.runtime.runner import Processes, parse_processes
from flows.runtime.settings import Watching
from sinks.directories import PARTITION_BY, PartitionBy
from sinks.table_sink import COMPRESSIONS, RollingPolicy
from sources.kafka_config import parse_assignments, read_properties


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
            "credentials (chmod 600 it), since command lines end up in shell history and "
            "ps. [default: none]",
        ),
        env_option(
            "-X",
            "client_setting",
            env="X",
            type=ClientSetting(),
            multiple=True,
            default=None,
            help="One librdkafka setting for every Kafka client (repeatable); wins over "
            "--kafka-config. EVENTLAKE_X holds one setting per line, so that values with "
            "spaces stay whole; keep secrets there or in --kafka-config, off the command "
            "line. [default: none]",
        ),
    ],
    _kafka,
)
"""``--kafka-config`` and ``-X``, passed as ``kafka``: librdkafka client settings."""


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
        env_option(
            "--metrics-host",
            env="METRICS_HOST",
            default=Watching.metrics_host,
            help="The address --metrics-port listens on: this host only by default; "
            "0.0.0.0 for every interface (e.g. in a container, for Prometheus and probes).",
        ),
    ],
    lambda status_interval, metrics_port, metrics_host: Watching(
        status_interval, metrics_port, metrics_host
    ),
)
"""``--status-interval``, ``--metrics-port`` and ``--metrics-host``, passed as
``watching``."""
