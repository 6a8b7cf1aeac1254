"""Disks a run cannot write, fills or finds links in: driven through the CLI.

Read-only and full file systems are small tmpfs mounts made in a mount namespace of the
test's own (``unshare``), so the test needs no privileges and leaves nothing mounted.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from flows.runtime.panics import PanicFilter
from sources.generators import MonitoringGenerator
from tests.conftest import Broker, NewTopic
from tests.helpers import eventlake, produce_events

START = datetime(2024, 5, 1, 8, tzinfo=UTC)
UNREACHABLE = "127.0.0.1:1"
"""No broker answers here: a run that connected first would wait, then fail otherwise."""
TABLES = ("service_metrics", "late", "dead_letter", "gaps")
"""Compared row for row (``alerts`` judge estimated quantiles, which depend on merge order)."""


def in_mount_namespace(script: str, mount: Path, options: str) -> subprocess.CompletedProcess[str]:
    """Run the shell ``script`` with a tmpfs (mount ``options``) at ``mount``."""
    mount.mkdir(parents=True, exist_ok=True)
    setup = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && "
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", setup + script],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def cli(*args: str | Path) -> str:
    return shlex.join([sys.executable, "-m", "flows.cli", *map(str, args)])


@pytest.mark.parametrize("read_only", ["out", "recovery"])
def test_a_read_only_output_or_recovery_directory_is_refused_before_connecting(
    tmp_path: Path, read_only: str
) -> None:
    mount = tmp_path / "ro"
    out = mount / "out" if read_only == "out" else tmp_path / "out"
    recovery = mount / "recovery" if read_only == "recovery" else tmp_path / "recovery"
    run = cli("run", "monitoring", "--bounded", "--brokers", UNREACHABLE, "--out", out,
              "--recovery-dir", recovery, "--broker-timeout", "5m")  # fmt: skip

    done = in_mount_namespace(run, mount, "ro,size=1m")

    assert done.returncode == 2, done.stderr
    flag = "--out" if read_only == "out" else "--recovery-dir"
    assert "Read-only file system" in done.stderr and f"pass another {flag}" in done.stderr
    assert "Traceback" not in done.stderr and "Kafka" not in done.stderr


@pytest.mark.parametrize("link", ["service_metrics", "late/.pending", "alerts/date=2024-05-01"])
def test_a_symbolic_link_inside_a_table_is_refused(
    broker: Broker, new_topic: NewTopic, tmp_path: Path, link: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / link).parent.mkdir(parents=True)
    (out / link).symlink_to(elsewhere)
    topic = new_topic()
    produce_events(broker.target, topic, MonitoringGenerator(seed=3, start=START), 1_000)

    done = eventlake("run", "monitoring", "--bounded", "--topic", topic, "--out", str(out),
                     "--recovery-dir", str(tmp_path / "recovery"),
                     "--brokers", broker.target.bootstrap_servers)  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert f"{out / link} is a symbolic link to {elsewhere}" in done.stderr
    assert list(elsewhere.iterdir()) == [], "nothing was written through the link"


def test_a_full_disk_stops_the_run_in_one_line_and_the_resume_loses_nothing(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic()
    produce_events(
        broker.target, topic, MonitoringGenerator(seed=4, start=START, events_per_second=20), 40_000
    )
    disk = tmp_path / "disk"
    options = [
        "--topic",
        topic,
        "--brokers",
        broker.target.bootstrap_servers,
        "--bounded",
        "--file-max-age",
        "0.1s",
        "--snapshot-interval",
        "0.5s",
        "--batch-size",
        "1000",
    ]
    run = cli("run", "monitoring", *options, "--out", disk / "out",
              "--recovery-dir", tmp_path / "recovery")  # fmt: skip
    then = f"mount -o remount,size=64m {disk} && {run} --final && cp -r {disk}/out {tmp_path}"
    script = f"{run} 2> {tmp_path / 'full.log'}; echo $? > {tmp_path / 'full.code'}; {then}"

    done = in_mount_namespace(script, disk, "size=200k")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "full.code").read_text().strip() == "1"
    full = (tmp_path / "full.log").read_text().strip().splitlines()
    assert full[-1].startswith("error: cannot write table ") and "No space left" in full[-1]
    assert "the same command again (with --recovery-dir it resumes" in full[-1]
    assert not [line for line in full[:-1] if line.strip() and "run monitoring" not in line]
    alone = eventlake("run", "monitoring", *options, "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    for table in TABLES:
        assert sorted_rows(tmp_path / "out" / table) == sorted_rows(tmp_path / "alone" / table)


def sorted_rows(table_dir: Path) -> list[tuple[object, ...]]:
    """The rows of a table, without what depends on the order partials were merged in
    (sketches and the quantiles they estimate; the last digits of a float sum)."""
    if not table_dir.exists():
        return []
    rows = ds.dataset(table_dir, partitioning="hive").to_table().to_pylist()
    exact = [{key: round(value, 6) if isinstance(value, float) else value
              for key, value in row.items() if not re.match(r"sketch_|p\d+_", key)}
             for row in rows]  # fmt: skip
    return sorted(tuple(sorted((k, repr(v)) for k, v in row.items())) for row in exact)


PANIC = (
    b"thread '<unnamed>' panicked at src/outputs.rs:364:37:\nBox<dyn Any>\n"
    b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
)
BACKTRACE = (
    b"thread '<unnamed>' panicked at src/outputs.rs:364:37:\nBox<dyn Any>\nstack backtrace:\n"
    b"   0: std::panicking::begin_panic\n             at /rustc/library/std/src/panicking.rs\n"
    b"note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n"
)


@pytest.mark.parametrize("panic", [PANIC, BACKTRACE], ids=["plain", "backtrace"])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_the_panic_filter_drops_panic_blocks_and_forwards_the_rest(
    tmp_path: Path, panic: bytes, chunk: int
) -> None:
    """A terminal's status line redraws without a newline right before the panic; a
    second panic (another worker's) has no note at its end."""
    second = b"thread '<unnamed>' panicked at src/outputs.rs:364:37:\nBox<dyn Any>\n"
    written = b"run monitoring: 10 events\r\x1b[2Kredrawn " + b"thread 'a' is text\n"
    written += b"\r\x1b[2Krun monitoring: 20 events\r" + panic + second
    written += b"error: cannot write table late: No space left on device\n" + b"partial"
    with (tmp_path / "forwarded").open("wb") as forwarded:
        panic_filter = PanicFilter(forwarded.fileno())
        for start in range(0, len(written), chunk):
            panic_filter.feed(written[start : start + chunk])
        panic_filter.flush()

    assert (tmp_path / "forwarded").read_bytes() == (
        b"run monitoring: 10 events\r\x1b[2Kredrawn thread 'a' is text\n"
        b"\r\x1b[2Krun monitoring: 20 events\r"
        b"error: cannot write table late: No space left on device\npartial"
    )
