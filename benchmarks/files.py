"""Files per table: the rolling policy against one file per snapshot, and compaction.

A 10-minute run at the defaults (snapshots every 10 s, files cut after 60 s)
takes 60 snapshots and lets a file collect 6 of them. Reproducing that in
real time would take 10 minutes, so this scales wall-clock time instead: it
produces 10 minutes of monitoring events (200 per second of event time),
times one bounded run without checkpoints, and then runs the flow with a
snapshot interval of 1/60 of that time and a file age of 6 intervals, so
that 10 minutes of events pass through about 60 snapshots as in real time.
The comparison run cuts a file at every snapshot (file age ~0). Finally every
table of the default-policy run is compacted.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common.progress import Progress
from flows import monitoring
from flows.cli.commands import compact_command, run_command
from flows.runtime.checkpoints import Checkpointing
from flows.runtime.settings import FlowSettings
from sinks.recovery_store import resume_epoch
from sinks.table_sink import RollingPolicy
from sources.broker import EmbeddedBroker
from sources.generators import MonitoringGenerator
from sources.producer import ProduceRequest, produce
from sources.target import KafkaTarget
from sources.topics import TopicSpec

EVENTS = 10 * 60 * 200
SNAPSHOTS = 60
SNAPSHOTS_PER_FILE = 6
BATCH = 200


def _files(table_dir: Path) -> int:
    return sum(1 for _ in table_dir.rglob("*.parquet"))


def _run(target: KafkaTarget, out: Path, interval_s: float | None, max_age_s: float) -> int:
    """Run the flow once; the epochs it snapshotted (0 without checkpoints)."""
    checkpointing = None if interval_s is None else Checkpointing(out / "recovery", interval_s)
    settings = FlowSettings(
        target=target, topic="requests", out=out / "tables", bounded=True, final=True,
        batch_size=BATCH,
        rolling=RollingPolicy(max_age_s=max_age_s), checkpointing=checkpointing,
    )  # fmt: skip
    run_command(monitoring.FLOW, settings)
    return 0 if checkpointing is None else (resume_epoch(checkpointing.directory) or 1) - 1


def main() -> None:
    """Print files per table for both policies and after compaction."""
    generator = MonitoringGenerator(seed=4, start=datetime(2024, 5, 1, 12, 55, tzinfo=UTC))
    with (
        EmbeddedBroker(topics=[TopicSpec("requests", 16)]) as bootstrap,
        tempfile.TemporaryDirectory() as work,
    ):
        target, root = KafkaTarget(bootstrap), Path(work)
        produce(generator, target, ProduceRequest("requests", count=EVENTS), Progress("produce"))
        started = time.perf_counter()
        _run(target, root / "calibration", None, RollingPolicy.max_age_s)
        interval = (time.perf_counter() - started) / SNAPSHOTS
        epochs = {
            "rolling (age = 6 snapshots)": _run(
                target, root / "rolling", interval, interval * SNAPSHOTS_PER_FILE
            ),
            "one file per snapshot": _run(target, root / "per-snapshot", interval, 1e-6),
        }
        counts = {
            name: {
                table: _files(root / directory / "tables" / table) for table in monitoring.TABLES
            }
            for name, directory in zip(epochs, ("rolling", "per-snapshot"), strict=True)
        }
        for table in monitoring.TABLES:
            if _files(root / "rolling" / "tables" / table):
                compact_command(root / "rolling" / "tables" / table, 128 * 2**20)
        counts["rolling, then compacted"] = {
            table: _files(root / "rolling" / "tables" / table) for table in monitoring.TABLES
        }
    print(
        f"\n10 minutes of events ({EVENTS:,}); snapshot interval scaled to {interval * 1000:.0f} ms"
    )
    print(f"{'policy':<32}{'epochs':>7}" + "".join(f"{t:>17}" for t in monitoring.TABLES))
    for name, per_table in counts.items():
        shown = epochs.get(name, "")
        print(f"{name:<32}{shown!s:>7}" + "".join(f"{n:>17}" for n in per_table.values()))


if __name__ == "__main__":
    main()
