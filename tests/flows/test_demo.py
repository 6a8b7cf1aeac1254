"""`eventlake demo` as a user runs it: a separate process, its own broker, Parquet out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from common.errors import ConfigError
from flows import monitoring
from sources.connection import list_topics
from sources.target import KafkaTarget

pytestmark = pytest.mark.integration  # starts brokers of its own


def test_demo_runs_end_to_end_and_leaves_readable_parquet(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--out", str(out),
         "--monitoring-events", "20000", "--analytics-events", "5000"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = ds.dataset(out / monitoring.TABLE).to_table()
    assert table.schema == monitoring.metrics_spec(60.0).output_schema()
    assert sum(table["count"].to_pylist()) == 20_000
    assert "20,000 events delivered to 'requests'" in result.stderr
    assert "5,000 events delivered to 'shop'" in result.stderr
    assert f"{out / monitoring.TABLE}/" in result.stdout
    for service in set(table["service"].to_pylist()):
        assert service in result.stdout
    address = re.search(r"broker at (\S+)", result.stdout)
    assert address is not None
    with pytest.raises(ConfigError, match="cannot reach Kafka"):
        list_topics(KafkaTarget(address.group(1)), timeout_s=2)  # the broker was stopped
