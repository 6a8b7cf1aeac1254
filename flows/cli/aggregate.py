"""``eventlake aggregate`` and ``eventlake validate``: windowed tables over any JSON topic."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import ConfigError
from common.units import shown_duration
from flows.cli.commands import run_command
from flows.cli.option_groups import partition_by_option
from flows.cli.options import max_session_option, runtime_options
from flows.cli.params import Duration, env_option
from flows.pipelines.config import PipelineConfig, aggregation_config, window_spec
from flows.pipelines.files import load_pipeline
from flows.pipelines.flow import WINDOWS_TABLE, pipeline_flow
from flows.runtime.settings import FlowSettings, Runtime
from sinks.directories import PartitionBy
from sinks.table_sink import RollingPolicy
from sources.flexible_decode import TIME_FORMATS, FlexibleTimeFormat


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@click.command()
@env_option("--topic", env="AGG_TOPIC", required=True, help="Input topic of JSON objects.")
@env_option(
    "--time-field",
    env="AGG_TIME_FIELD",
    required=True,
    help="Field holding the event time (dots for nested fields, e.g. meta.ts).",
)
@env_option(
    "--time-format",
    env="AGG_TIME_FORMAT",
    type=click.Choice(TIME_FORMATS),
    default="auto",
    help="auto reads ISO-8601 (Z, offsets or UTC) and epoch seconds/milliseconds "
    "(numbers from 10^11 are milliseconds); the others force one form.",
)
@env_option(
    "--key",
    env="AGG_KEY",
    required=True,
    help="Group-by fields, comma-separated; a missing or null key is a group of its own.",
)
@env_option(
    "--value",
    env="AGG_VALUE",
    default=None,
    help="Numeric fields the value aggregations apply to, comma-separated. [default: none]",
)
@env_option(
    "--window",
    env="AGG_WINDOW",
    type=Duration(),
    default=None,
    help="Window length. [default: none; required unless --session-gap]",
)
@env_option(
    "--slide",
    env="AGG_SLIDE",
    type=Duration(),
    default=None,
    help="Hop: hopping windows. [default: none: tumbling windows]",
)
@env_option(
    "--session-gap",
    env="AGG_SESSION_GAP",
    type=Duration(),
    default=None,
    help="Inactivity that ends a session: session windows instead of --window. [default: none]",
)
@max_session_option
@env_option(
    "--agg",
    env="AGG_AGGREGATIONS",
    default="count",
    help="Comma-separated: count, sum, mean, min, max, stddev, pNN (e.g. p95), "
    "distinct[:FIELD], topk[:FIELD[:K]].",
)
@env_option(
    "--lateness",
    env="AGG_LATENESS",
    type=Duration(allow_zero=True),
    default=shown_duration(FlowSettings.lateness_s),
    help="How far the watermark trails the slowest partition; older events go to late/.",
)
@env_option(
    "--filter",
    "filter_text",
    env="AGG_FILTER",
    default=None,
    help="Only events matching e.g. 'status >= 500' or \"service == 'api' and x > 1\". "
    "[default: every event]",
)
@env_option(
    "--strict/--lenient",
    env="AGG_STRICT",
    default=False,
    help="Dead-letter events whose --value fields are not numbers, instead of counting "
    "them in invalid_values.",
)
@runtime_options
def aggregate(
    topic: str,
    time_field: str,
    time_format: FlexibleTimeFormat,
    key: str,
    value: str | None,
    window: float | None,
    slide: float | None,
    session_gap: float | None,
    max_session: float | None,
    agg: str,
    lateness: float,
    filter_text: str | None,
    strict: bool,
    runtime: Runtime,
) -> None:
    """Windowed aggregations of any JSON topic into OUT/windows/ (late/ and dead_letter/ too)."""
    table = aggregation_config(
        WINDOWS_TABLE,
        _names(key),
        _names(value),
        _names(agg),
        window_spec(window, slide, session_gap, max_session),
        filter_text,
    )
    pipeline = PipelineConfig(
        topic,
        time_field,
        (table,),
        time_format,
        lateness,
        strict,
    )
    run_command(pipeline_flow(pipeline), runtime.settings(topic, lateness_s=lateness))


@click.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path, dir_okay=False))
@partition_by_option
def validate(pipeline_file: Path, partition_by: PartitionBy) -> None:
    """Check PIPELINE_FILE (TOML) as `eventlake run` would, without running it; exit 2
    with the reason if invalid."""
    pipeline = load_pipeline(pipeline_file)
    try:
        pipeline_flow(pipeline).check(RollingPolicy(partition_by=partition_by))
    except ConfigError as err:
        raise ConfigError(f"{pipeline_file}: {err}") from None
    tables = ", ".join(table.table for table in pipeline.tables)
    click.echo(f"{pipeline_file}: valid; reads {pipeline.topic!r}, writes {tables}")
