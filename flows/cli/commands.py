"""What each CLI command does, once its flags are parsed into settings."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig

from common.errors import BrokerError, ConfigError, InterruptedRunError
from common.log import LOGGER
from common.metrics import RunFigures, RunMetrics
from common.progress import Progress
from common.secrets import scrub
from flows.runtime.checkpoints import owned, prepare
from flows.runtime.dataflow import SOURCE_STEP
from flows.runtime.flow import Flow
from flows.runtime.limits import make_room_for_consumers
from flows.runtime.metrics_endpoint import serving_metrics
from flows.runtime.offsets import commit_after_run
from flows.runtime.output import claimed, publish_last_rolls, refuse_earlier_output, require_output
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings, ProduceSettings
from flows.runtime.status_line import CheckpointWatch, LiveRun, StatusLine
from flows.runtime.supervisor import Supervisor
from sinks.compaction import CompactionReport, compact_table
from sinks.inspect import head, summarize
from sinks.parquet_files import column_sum, count_rows
from sources.batches import GAPS_TABLE
from sources.connection import ensure_topic, require_topic
from sources.generators import GENERATORS, MonitoringGenerator
from sources.producer import ProduceReport, produce
from sources.target import KafkaTarget
from sources.topics import TopicSpec


def produce_command(target: KafkaTarget, settings: ProduceSettings) -> ProduceReport:
    """Produce generated events; Ctrl-C ends an endless run after a flush."""
    request = settings.request
    if request.count is not None and request.duration_s is not None:
        raise ConfigError("pass either --count or --duration, not both")
    generator = GENERATORS[settings.kind](
        seed=settings.seed,
        start=settings.start,
        events_per_second=request.rate or settings.event_rate,
        **_generator_options(settings),
    )
    ensure_topic(target, TopicSpec(request.topic, settings.partitions))
    progress = Progress(f"produce {settings.kind} → {request.topic}", request.count)
    with _stop_on_signals() as stop:
        report = produce(generator, target, request, progress, stop)
    progress.finish(f"{report.sent:,} events delivered to {request.topic!r}")
    if report.dropped:
        _report_dropped(target, request.topic, report.dropped)
    if report.stopped and (request.count is not None or request.duration_s is not None):
        raise InterruptedRunError(
            f"interrupted after {report.sent:,} events; {request.topic!r} holds fewer than asked"
        )
    return report


def _generator_options(settings: ProduceSettings) -> dict[str, float]:
    """Options only some generators take; ConfigError if given to another."""
    if settings.disorder is None:
        return {}
    if settings.kind != MonitoringGenerator.name:
        raise ConfigError("--disorder applies to monitoring events only")
    return {"disorder": settings.disorder}


def _report_dropped(target: KafkaTarget, topic: str, dropped: int) -> None:
    """Data loss in the topic is an error on the embedded broker, a warning elsewhere."""
    if not target.embedded:
        LOGGER.warning(
            "warning: the cluster deleted the %s oldest messages of %r while producing "
            "(retention); readers starting now will not see them", f"{dropped:,}", topic,
        )  # fmt: skip
        return
    raise BrokerError(
        f"the embedded broker dropped the {dropped:,} oldest messages of {topic!r}: it keeps "
        "at most 5 MiB per partition. Spread the events over more partitions "
        f"(`eventlake broker create-topic {topic}2:32`, then --topic {topic}2) or send fewer"
    )


def run_command(flow: Flow, settings: FlowSettings) -> None:
    """Run ``flow`` to completion (bounded) or until interrupted."""
    require_output(flow.tables, settings)
    partitions = require_topic(settings.target, settings.topic)
    if settings.processes.spawn > 1:
        _supervise(flow, settings)
        return
    make_room_for_consumers(settings, partitions)
    with contextlib.ExitStack() as owning:
        if settings.checkpointing is not None:
            owning.enter_context(owned(settings.checkpointing.directory, settings.processes))
        _run_owned(flow, settings)


def _run_owned(flow: Flow, settings: FlowSettings) -> None:
    """:func:`run_command` once this process owns the recovery directory."""
    recovery, resumed_from = None, None
    if settings.checkpointing is None:
        start = "no --recovery-dir, so a crash loses this run's progress"
    else:
        recovery, resumed_from = prepare(settings.checkpointing)
        where = settings.checkpointing.directory
        start = f"starting fresh with checkpoints in {where}"
        if resumed_from is not None:
            start = f"resuming from epoch {resumed_from} in {where}"
    name, metrics = flow.name, RunMetrics()
    with _stop_on_signals() as stop, _watched(name, settings, metrics.figures) as status:
        dataflow = flow.build(replace(settings, stop=stop), metrics)  # checks the definition
        with claimed(flow.tables, settings):
            if resumed_from is None:
                refuse_earlier_output(settings.out, flow.tables)
            LOGGER.info("run %s: %s", name, start)
            _run_and_publish(dataflow, flow.tables, settings, recovery)
        source_step = f"{dataflow.flow_id}.{SOURCE_STEP}"
        commit_after_run(settings, dataflow.flow_id, source_step, status.figures(), stop.is_set())
        if stop.is_set():
            _report_stop(name, settings, status)
        elif resumed_from is not None and _nothing_new(settings, status.figures()):
            status.finish(f"already complete: nothing new to read; output under {settings.out}/")
        else:
            status.finish(_summary(flow, settings, status.figures()))


def _run_and_publish(
    dataflow: Dataflow,
    tables: tuple[str, ...],
    settings: FlowSettings,
    recovery: RecoveryConfig | None,
) -> None:
    """Run ``dataflow``; then, however it ended, publish what its last snapshots
    committed (durable by then)."""
    checkpointing = settings.checkpointing
    interval = (
        None if checkpointing is None else timedelta(seconds=checkpointing.snapshot_interval_s)
    )
    try:
        run_dataflow(dataflow, settings.workers, interval, recovery, settings.processes)
    finally:
        if checkpointing is not None:
            publish_last_rolls(settings.out, tables, checkpointing.directory)


def _supervise(flow: Flow, settings: FlowSettings) -> None:
    """Run the flow as ``settings.processes.spawn`` local processes, each this command
    again; one status line (and one ``/metrics``) for them all."""
    name, count = flow.name, settings.processes.spawn
    LOGGER.info("run %s: starting %s processes of one run", name, count)
    supervisor = Supervisor(count, sys.argv[1:])
    with _stop_on_signals() as stop, _watched(name, settings, supervisor.figures) as status:
        supervisor.run(stop)
        # A signal to one child stops them all; an unbounded run ends no other way.
        if stop.is_set() or supervisor.interrupted() or not settings.bounded:
            _report_stop(name, settings, status)
        else:
            status.finish(_summary(flow, settings, status.figures()))


@contextlib.contextmanager
def _watched(
    name: str, settings: FlowSettings, figures: Callable[[], RunFigures]
) -> Iterator[StatusLine]:
    """The run's status line, and its ``/metrics`` if asked for, while inside."""
    with contextlib.ExitStack() as stack:
        run = LiveRun(name, settings.topic, figures)
        if settings.checkpointing is not None:
            supervising = settings.processes.spawn > 1  # runs no dataflow of its own
            checkpoints = CheckpointWatch(settings.checkpointing.directory, not supervising)
            stack.callback(checkpoints.close)
            run = replace(run, checkpoint=checkpoints.latest)
        port = settings.watching.metrics_port
        if port is not None:
            stack.enter_context(serving_metrics(settings.watching.metrics_host, port, run))
        interval = settings.watching.status_interval_s
        yield stack.enter_context(StatusLine(f"run {name}", run, interval))


def _nothing_new(settings: FlowSettings, figures: RunFigures) -> bool:
    """Whether a bounded run read nothing and wrote nothing (``--final`` may close
    windows an earlier run kept open)."""
    wrote = any(figures.table_rows().values())
    return settings.bounded and figures.events() == 0 and not wrote


def _summary(flow: Flow, settings: FlowSettings, figures: RunFigures) -> str:
    """Rows written per table, messages lost to gaps if any, and the windows a bounded
    run keeps open for the next."""
    written = ", ".join(f"{table} {count_rows(settings.out / table):,}" for table in flow.tables)
    missing = column_sum(settings.out / GAPS_TABLE, "missing")
    lost = (
        f"; {missing:,} messages were deleted from Kafka before they were read" if missing else ""
    )
    kept = ""
    if settings.bounded and not settings.closes_windows:
        kept = (
            f"; {figures.per_shard('open_windows'):,} windows still open, kept for the next "
            "run (--final emits them)"
        )
    return f"rows under {settings.out}/: {written}{lost}{kept}"


def _report_stop(name: str, settings: FlowSettings, status: StatusLine) -> None:
    """Say how a run stopped by a signal ended; InterruptedRunError if it was bounded."""
    resume = "the same command resumes it" if settings.checkpointing else "it cannot resume"
    summary = f"stopped on request with every buffered row written; {resume}"
    if settings.bounded:
        status.finish()
        raise InterruptedRunError(f"run {name} interrupted before the end of its input; {resume}")
    status.finish(summary)


def describe_tables(out: Path, table: str | None, rows: int, as_json: bool) -> str:
    """What ``eventlake inspect`` prints: a summary per table, and ``rows`` rows of
    ``table`` if given."""
    summaries = summarize(out)
    first_rows = None if table is None else head(out, table, rows)
    if as_json:
        document: dict[str, Any] = {"tables": [s.as_dict() for s in summaries]}
        if first_rows is not None:
            document["head"] = {"table": table, "rows": first_rows.to_pylist()}
        return json.dumps(document, indent=2, default=str)
    lines = []
    for s in summaries:
        span = f"{s.time_column} {s.first} .. {s.last}" if s.first else "no rows"
        lines.append(
            f"{s.table}: {s.files:,} files, {s.rows:,} rows, {s.bytes:,} bytes, "
            f"{s.partitions} partitions; {span}"
        )
        lines += [f"    {column}" for column in s.schema]
    if first_rows is not None:
        lines += ["", f"first {first_rows.num_rows} rows of {table}:", *_aligned(first_rows)]
    return "\n".join(lines)


def _aligned(table: pa.Table, width: int = 28) -> list[str]:
    """``table`` as text lines, one column per field; binary sketches shown by size."""

    def cell(value: Any) -> str:
        text = f"<{len(value)} bytes>" if isinstance(value, bytes) else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(v) for v in row.values()] for row in table.to_pylist()]
    header = table.column_names
    sizes = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    return [
        "  ".join(text.ljust(size) for text, size in zip(row, sizes, strict=True)).rstrip()
        for row in [header, *cells]
    ]


def compact_command(
    table_dir: Path, target_size: int, recovery_dir: Path | None = None
) -> CompactionReport:
    """Compact ``table_dir``, showing progress and what was merged; with the writing run's
    ``recovery_dir``, publish what its checkpoints committed first."""
    progress = Progress(f"compact {table_dir}", unit="files")
    report = compact_table(table_dir, target_size, progress, recovery_dir)
    summary = (
        f"merged {report.files_merged:,} files ({report.rows:,} rows) into "
        f"{report.files_written:,} in {report.directories:,} directories"
    )
    if report.published:
        summary += f"; published {report.published:,} committed rolls a stopped run left pending"
    if report.uncommitted and recovery_dir is None:
        summary += (
            f"; left {report.uncommitted:,} pending rolls hidden: pass the --recovery-dir of "
            "the run that wrote them to publish those its checkpoints committed"
        )
    elif report.uncommitted:
        summary += (
            f"; left {report.uncommitted:,} rolls written after the flow's last checkpoint "
            "hidden (a resume writes them again)"
        )
    progress.finish(summary)
    return report


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT/SIGTERM set while inside, so an endless run can end cleanly.

    The previous handlers are restored on leaving.
    """
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, lambda *_: stop.set()) for signum in signals]
    try:
        yield stop
    finally:
        for signum, handler in zip(signals, previous, strict=True):
            signal.signal(signum, handler)


def echo_error(message: str) -> None:
    """Print an error the way every command does."""
    print(f"error: {scrub(message)}", file=sys.stderr)
