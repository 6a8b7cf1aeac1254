"""``eventlake status``: where a run with checkpoints stands, whether it runs or not.

Read from the recovery directory (the checkpointed offsets, the resume epoch, the run's
definition, the lock a running process holds), the topic's end offsets on Kafka (the
lag), and the output tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from common.errors import ConfigError
from common.log import LOGGER
from flows.runtime.checkpoints import holders, last_written, open_windows
from flows.runtime.dataflow import SOURCE_STEP
from flows.runtime.run_definition import recorded_definition, windowed_tables
from sinks.inspect import summarize
from sinks.recovery_store import committed_states, resume_epoch
from sources.connection import patiently
from sources.target import KafkaTarget


def run_status(recovery_dir: Path, out: Path | None, target: KafkaTarget | None) -> dict[str, Any]:
    """Where the run checkpointing in ``recovery_dir`` stands; lag only with a ``target``.
    ConfigError if no run has checkpointed there."""
    definition = recorded_definition(recovery_dir)
    if definition is None:
        raise ConfigError(f"no run has checkpointed in {recovery_dir}; check --recovery-dir")
    flow, topic = definition["flow"], definition["topic"]
    out = out or Path(definition["output directory"])
    states = committed_states(recovery_dir, f"{flow}.{SOURCE_STEP}")
    offsets = {int(key): int(state.next_offset) for key, state in states.items()}
    ends = {} if target is None else _end_offsets(target, topic, sorted(offsets))
    reached = target is not None and len(ends) == len(offsets)
    partitions = [
        {"partition": part, "checkpointed": offset, "end": ends.get(part),
         "lag": ends[part] - offset if part in ends else None}
        for part, offset in sorted(offsets.items())
    ]  # fmt: skip
    return {
        "recovery_dir": str(recovery_dir), "flow": flow, "topic": topic, "out": str(out),
        "resume_epoch": resume_epoch(recovery_dir),
        "checkpointed_at": _iso(last_written(recovery_dir)),
        "running": holders(recovery_dir), "partitions": partitions,
        "lag": sum(p["lag"] for p in partitions) if reached else None,
        "open_windows": open_windows(recovery_dir, flow, windowed_tables(definition)),
        "tables": _tables(out),
    }  # fmt: skip


def _tables(out: Path) -> list[dict[str, Any]]:
    """Files and rows per output table (none before the run's first file)."""
    try:
        return [summary.as_dict() for summary in summarize(out)]
    except ConfigError:
        return []


def _end_offsets(target: KafkaTarget, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer({**target.client_config(), "group.id": "eventlake-status"})

    def end(partition: int) -> int:
        def ask(timeout_s: float) -> tuple[int, int]:
            low_high: tuple[int, int] = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout_s
            )
            return low_high

        return patiently(target, ask)[1]

    try:
        return {partition: end(partition) for partition in partitions}
    except ConfigError as err:  # Kafka does not answer: the status without lag
        LOGGER.warning("no lag: %s", err)
        return {}
    finally:
        consumer.close()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def render_status(status: dict[str, Any], as_json: bool) -> str:
    """What ``eventlake status`` prints: text, or the same as JSON."""
    if as_json:
        return json.dumps(status, indent=2, default=str)
    running = status["running"]
    who = ", ".join(f"pid {r.get('pid')} on {r.get('host')} since {r.get('since')}"
                    for r in running) or "no process"  # fmt: skip
    lines = [
        f"run of {status['flow']} over {status['topic']}, checkpoints in "
        f"{status['recovery_dir']}, output in {status['out']}",
        f"running: {who}",
        f"resume epoch: {status['resume_epoch']}, last written {status['checkpointed_at']}",
        "partition  checkpointed        end        lag",
    ]
    for part in status["partitions"]:
        end, lag = (("?" if part[k] is None else f"{part[k]:,}") for k in ("end", "lag"))
        lines.append(f"{part['partition']:>9}  {part['checkpointed']:>12,}  {end:>9}  {lag:>9}")
    total = status["lag"]
    lines.append(f"lag: {'unknown (pass --brokers)' if total is None else f'{total:,}'} messages")
    kept = ", ".join(f"{table} {count:,}" for table, count in status["open_windows"].items())
    lines.append(f"open windows kept for the next run: {kept or 'none'}")
    lines += [f"table {t['table']}: {t['rows']:,} rows in {t['files']} file(s)"
              for t in status["tables"]]  # fmt: skip
    return "\n".join(lines)
