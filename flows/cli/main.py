"""The ``eventlake`` command line: parse flags, then call one function per command.

Every flag can also be set with the ``EVENTLAKE_*`` environment variable that
``--help`` shows. Exit codes: 0 done, 2 usage or configuration error,
1 failure while running.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from common.errors import ConfigError, EventlakeError, InterruptedRunError
from common.log import (
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    LOG_FORMATS,
    LOG_LEVELS,
    configure_logging,
)
from common.units import shown_duration, shown_size
from flows.cli.aggregate import aggregate, validate
from flows.cli.broker import broker
from flows.cli.commands import (
    compact_command,
    describe_tables,
    echo_error,
    produce_command,
    run_command,
)
from flows.cli.demo import run_demo
from flows.cli.option_groups import kafka_options
from flows.cli.options import (
    brokers_option,
    max_session_option,
    runtime_options,
    state_file_option,
)
from flows.cli.params import ByteSize, Duration, UtcTime, env_option
from flows.cli.secret_safe import guard_secrets, show_usage_error
from flows.cli.status import render_status, run_status
from flows.registry import resolve_flow
from flows.runtime.settings import DemoSettings, FlowSettings, ProduceSettings, Runtime
from sinks.compaction import DEFAULT_TARGET_SIZE
from sources.broker import read_state
from sources.connection import resolve_target
from sources.generators import DEFAULT_DISORDER, DEFAULT_EVENT_RATE, GENERATORS
from sources.producer import ProduceRequest
from sources.topics import DEFAULT_PARTITIONS

STATUS_TIMEOUT_S = 10.0
"""How long ``eventlake status`` tries Kafka for the end offsets (the lag)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="eventlake")
@env_option(
    "--log-level",
    env="LOG_LEVEL",
    type=click.Choice(LOG_LEVELS),
    default=DEFAULT_LOG_LEVEL,
    help="Show diagnostics (resumes, outages, gaps, locks) at this level and above.",
)
@env_option(
    "--log-format",
    env="LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    default=DEFAULT_LOG_FORMAT,
    help="Diagnostics as plain lines, or as JSON lines for log collectors.",
)
def cli(log_level: str, log_format: str) -> None:
    """eventlake: windowed aggregations from Kafka to Parquet, on bytewax."""
    configure_logging(log_level, log_format)


cli.add_command(broker)


@cli.command()
@click.argument("kind", type=click.Choice(sorted(GENERATORS)))
@env_option(
    "--topic",
    env="PRODUCE_TOPIC",
    default=None,
    help="Topic to write. [default: requests for monitoring, shop for analytics]",
)
@env_option(
    "--count",
    env="PRODUCE_COUNT",
    type=click.IntRange(min=1),
    default=None,
    help="Send this many events, then stop. [default: no limit]",
)
@env_option(
    "--duration",
    env="PRODUCE_DURATION",
    type=Duration(),
    default=None,
    help="Send for this long (e.g. 30s, 5m), then stop. "
    "[default: no limit; without --count or --duration, until Ctrl-C]",
)
@env_option(
    "--rate",
    env="PRODUCE_RATE",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Events per second (wall clock); event time then follows the clock. "
    "[default: as fast as possible]",
)
@env_option(
    "--seed",
    env="PRODUCE_SEED",
    type=int,
    default=0,
    help="Generator seed; the same seed gives the same events.",
)
@env_option(
    "--start",
    env="PRODUCE_START",
    type=UtcTime(),
    default=None,
    help="Event time of the first event. [default: now]",
)
@env_option(
    "--event-rate",
    env="PRODUCE_EVENT_RATE",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_EVENT_RATE,
    help="Events per second of event time when --rate is not set.",
)
@env_option(
    "--disorder",
    env="PRODUCE_DISORDER",
    type=click.FloatRange(0, 1),
    default=None,
    help="Monitoring only: fraction of events sent up to 3 s out of order. "
    f"[default: {DEFAULT_DISORDER}]",
)
@env_option(
    "--partitions",
    env="PARTITIONS",
    type=click.IntRange(min=1),
    default=DEFAULT_PARTITIONS,
    help="Partitions of the topic if it must be created (embedded broker only).",
)
@brokers_option
@kafka_options
@state_file_option
def produce(
    kind: str,
    topic: str | None,
    count: int | None,
    duration: float | None,
    rate: float | None,
    seed: int,
    start: datetime | None,
    event_rate: float,
    disorder: float | None,
    partitions: int,
    brokers: str | None,
    kafka: dict[str, str],
    state_file: Path,
) -> None:
    """Send synthetic KIND events (monitoring or analytics) to Kafka."""
    target = resolve_target(brokers, state_file, settings=kafka)
    request = ProduceRequest(topic or GENERATORS[kind].default_topic, count, duration, rate)
    settings = ProduceSettings(kind, request, seed, start, disorder, event_rate, partitions)
    produce_command(target, settings)


@cli.command()
@click.argument("name")
@env_option(
    "--topic",
    env="RUN_TOPIC",
    default=None,
    help="Input topic. [default: the flow's, e.g. requests for monitoring]",
)
@env_option(
    "--window",
    env="WINDOW",
    type=Duration(),
    default=None,
    help="Window length. [default: the flow's: 1m monitoring, 1h analytics revenue]",
)
@env_option(
    "--slide",
    env="SLIDE",
    type=Duration(),
    default=None,
    help="Hop of hopping windows. [default: the flow's: 15m analytics revenue]",
)
@env_option(
    "--session-gap",
    env="SESSION_GAP",
    type=Duration(),
    default=None,
    help="Inactivity that ends a session. [default: the flow's: 30m analytics]",
)
@max_session_option
@env_option(
    "--lateness",
    env="LATENESS",
    type=Duration(allow_zero=True),
    default=None,
    help="Allowed lateness in seconds or with a unit: the watermark trails the slowest "
    "partition's newest event by this much; older events go to the late table. [default: "
    f"the flow's: {shown_duration(FlowSettings.lateness_s)}, or a pipeline file's lateness]",
)
@runtime_options
def run(
    name: str,
    topic: str | None,
    window: float | None,
    slide: float | None,
    session_gap: float | None,
    max_session: float | None,
    lateness: float | None,
    runtime: Runtime,
) -> None:
    """Run flow NAME (monitoring, analytics, a pipeline file NAME.toml, or MODULE:ATTRIBUTE
    naming a Flow) reading Kafka and writing Parquet."""
    flow = resolve_flow(name)
    settings = runtime.settings(
        topic or flow.default_topic,
        flow.kafka,
        window_s=window,
        slide_s=slide,
        session_gap_s=session_gap,
        max_session_s=max_session,
        lateness_s=flow.lateness_s if lateness is None else lateness,
    )
    run_command(flow, settings)


@cli.command()
@click.argument("table_dir", type=click.Path(path_type=Path, file_okay=False))
@env_option(
    "--target-size",
    env="COMPACT_TARGET_SIZE",
    type=ByteSize(),
    default=shown_size(DEFAULT_TARGET_SIZE),
    help="Merge files smaller than this into files of about this size (binary units).",
)
@env_option(
    "--recovery-dir",
    env="RECOVERY_DIR",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The --recovery-dir of the run that wrote the table: publish the files its "
    "checkpoints committed that a stopped run left pending. [default: leave them pending]",
)
def compact(table_dir: Path, target_size: int, recovery_dir: Path | None) -> None:
    """Merge the small Parquet files of TABLE_DIR (OUT/<table>) into larger ones.

    Readers may read meanwhile; a flow writing the table makes it refuse.
    """
    compact_command(table_dir, target_size, recovery_dir)


@cli.command()
@env_option(
    "--out",
    env="DEMO_OUT",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-output"),
    help="Where the demo writes its tables (replaced on every run).",
)
@env_option(
    "--monitoring-events",
    env="DEMO_MONITORING_EVENTS",
    type=click.IntRange(min=1),
    default=200_000,
    help="Monitoring events to produce.",
)
@env_option(
    "--analytics-events",
    env="DEMO_ANALYTICS_EVENTS",
    type=click.IntRange(min=1),
    default=100_000,
    help="Analytics events to produce.",
)
@env_option("--seed", env="DEMO_SEED", type=int, default=0, help="Generator seed.")
def demo(out: Path, monitoring_events: int, analytics_events: int, seed: int) -> None:
    """Start an embedded broker, produce events, run both flows, show the output."""
    run_demo(DemoSettings(out, monitoring_events, analytics_events, seed))


@cli.command()
@env_option(
    "--recovery-dir",
    env="STATUS_RECOVERY_DIR",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="The run's --recovery-dir.",
)
@env_option(
    "--out",
    env="STATUS_OUT",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The run's output directory. [default: the one its checkpoints record]",
)
@env_option("--json/--text", "as_json", env="STATUS_JSON", default=False,
            help="Print JSON instead of text.")  # fmt: skip
@brokers_option
@kafka_options
@state_file_option
def status(
    recovery_dir: Path,
    out: Path | None,
    as_json: bool,
    brokers: str | None,
    kafka: dict[str, str],
    state_file: Path,
) -> None:
    """Where a run with checkpoints stands: running or not, offsets and lag, tables."""
    known = brokers or "bootstrap.servers" in kafka or read_state(state_file) is not None
    target = resolve_target(brokers, state_file, STATUS_TIMEOUT_S, kafka) if known else None
    click.echo(render_status(run_status(recovery_dir, out, target), as_json))


@cli.command("inspect")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@env_option(
    "--table",
    env="INSPECT_TABLE",
    default=None,
    help="Show the first rows of this table. [default: none, summaries only]",
)
@env_option("--head", env="INSPECT_HEAD", type=click.IntRange(min=0), default=10,
            help="How many rows --table shows.")  # fmt: skip
@env_option("--json/--text", "as_json", env="INSPECT_JSON", default=False,
            help="Print JSON instead of text.")  # fmt: skip
def inspect_command(out: Path, table: str | None, head: int, as_json: bool) -> None:
    """Per table of OUT: files, rows, bytes, window_start range, partitions, schema."""
    click.echo(describe_tables(out, table, head, as_json))


cli.add_command(aggregate)
cli.add_command(validate)


def main() -> None:
    """Entry point of the ``eventlake`` console script."""
    guard_secrets()
    try:
        sys.exit(cli.main(prog_name="eventlake", standalone_mode=False))  # --help's code, or None
    except click.ClickException as err:
        show_usage_error(err)
        sys.exit(err.exit_code)
    except click.Abort:  # Ctrl-C before a command handles it: as click reports it
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except ConfigError as err:
        echo_error(str(err))
        sys.exit(2)
    except InterruptedRunError as err:
        echo_error(str(err))
        sys.exit(130)
    except EventlakeError as err:
        echo_error(str(err))
        sys.exit(1)


if __name__ == "__main__":
    main()
