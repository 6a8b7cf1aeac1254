"""``make acceptance``: both flows on 500,000 events each, checked against the batch oracle.

Produces with ``eventlake produce``, runs ``eventlake run NAME --bounded`` as OS
processes with one worker (timed, start-up included), then compares every
output row with the oracle of the test suite, computed from the topic's raw
messages. Prints events/s per flow; fails loudly on any mismatch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

from sources.broker import DEFAULT_TOPICS, EmbeddedBroker
from tests.flows import oracle, test_analytics_flow, test_monitoring_flow
from tests.helpers import read_topic

START = "2024-05-01T00:00:00Z"


def _eventlake(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True)


def main() -> None:
    """Produce, run both flows, compare with the oracle, print events/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000)
    events = parser.parse_args().events
    broker = EmbeddedBroker(topics=DEFAULT_TOPICS)
    with broker as bootstrap, tempfile.TemporaryDirectory() as work:
        for kind in ("monitoring", "analytics"):
            _eventlake("produce", kind, "--count", str(events), "--start", START,
                       "--brokers", bootstrap)  # fmt: skip
        for name in ("monitoring", "analytics"):
            started = time.perf_counter()
            _eventlake("run", name, "--bounded", "--out", f"{work}/{name}", "--brokers", bootstrap)
            elapsed = time.perf_counter() - started
            print(f"{name}: {events:,} events in {elapsed:.1f}s = {events / elapsed:,.0f} events/s")
        _check_monitoring(broker, Path(work) / "monitoring")
        _check_analytics(broker, Path(work) / "analytics")


def _check_monitoring(broker: EmbeddedBroker, out: Path) -> None:
    messages = read_topic(broker.target, "requests")
    rows = test_monitoring_flow.assert_windows_match(out, messages)
    assert sum(row["count"] for row in rows) == len(messages)
    print(f"monitoring matches the oracle: {len(rows)} windows")


def _check_analytics(broker: EmbeddedBroker, out: Path) -> None:
    events = oracle.parse_events(read_topic(broker.target, "shop"), ("user_id", "event_type"))
    test_analytics_flow.assert_revenue_matches(out, events, window_s=3600.0, slide_s=900.0)
    test_analytics_flow.assert_sessions_match(out, events)
    print(
        f"analytics matches the oracle: {ds.dataset(out / 'user_sessions').count_rows()} sessions"
    )


if __name__ == "__main__":
    main()
