"""Click options shared by the commands: every flag has an ``EVENTLAKE_*`` variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from common.errors import ConfigError
from common.units import shown_duration
from flows.cli.option_groups import (
    cluster_options,
    kafka_options,
    recovery_options,
    rolling_options,
    watching_options,
)
from flows.cli.params import Duration, Flag, Limit, env_option, option_group
from flows.runtime.checkpoints import Checkpointing
from flows.runtime.runner import Processes
from flows.runtime.settings import RunOptions, Runtime, Watching
from sinks.table_sink import RollingPolicy
from sources.broker import DEFAULT_STATE_FILE
from sources.event_time import DEFAULT_MAX_FUTURE_S
from sources.kafka_health import DEFAULT_ON_GAP, ON_GAP_CHOICES, OnGap
from sources.kafka_source import BATCH_SIZE
from sources.target import DEFAULT_BROKER_TIMEOUT_S

max_session_option = env_option(
    "--max-session",
    env="MAX_SESSION",
    type=Duration(allow_none=True),
    default=None,
    help="Sessions also end at every multiple of this since the Unix epoch, so none lasts "
    "longer (1d: at UTC midnight, as Google Analytics ends them); the next event starts a "
    "new session. [default: none]",
)
"""``--max-session`` of ``run`` and ``aggregate``."""

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
        "--max-open-windows",
        env="MAX_OPEN_WINDOWS",
        type=Limit(),
        default=RunOptions.max_open_windows,
        help="Windows (sessions) one process may hold open, all tables together; one more "
        "stops the run with exit 1, losing nothing (resume with a higher limit); `none` "
        "turns the limit off.",
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
    max_open_windows: int | None,
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
        commit_offsets=commit_offsets, watching=watching, max_open_windows=max_open_windows,
    )  # fmt: skip


def runtime_options(command: Callable[..., Any]) -> Any:
    """Where output goes and how the run goes (workers, files, checkpoints, processes,
    cluster), passed to ``command`` as ``runtime``."""
    decorated = option_group("runtime", _RUNTIME_FLAGS, _runtime)(command)
    groups = (state_file_option, brokers_option, kafka_options, cluster_options, recovery_options)
    for group in (*groups, rolling_options, watching_options):
        decorated = group(decorated)
    return decorated
