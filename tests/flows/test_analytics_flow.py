"""The analytics flow end to end against a batch oracle over the same events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from bytewax.testing import cluster_main, run_main

from flows import analytics
from flows.runtime.settings import FlowSettings
from sinks.parquet_files import count_rows
from sources.generators import AnalyticsGenerator
from sources.target import KafkaTarget
from tests.conftest import Broker
from tests.flows import oracle
from tests.flows.testing_io import generated, memory_io
from tests.helpers import eventlake, produce_events, read_topic

EVENTS = 15_000
WINDOW_S, SLIDE_S = 600.0, 300.0
GAP_US = round(analytics.DEFAULT_SESSION_GAP_S * oracle.MICROS_PER_S)


@pytest.fixture(scope="module")
def shop_topic(broker: Broker) -> str:
    """A topic with seeded analytics events spanning about 20 minutes of event time."""
    topic = broker.new_topic("analytics-flow", partitions=4)
    produce_events(broker.target, topic, _generator(), EVENTS)
    return topic


def _generator() -> AnalyticsGenerator:
    return AnalyticsGenerator(
        seed=5, start=datetime(2024, 5, 1, 9, tzinfo=UTC), events_per_second=12.0
    )


def _purchases(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in members if e["event_type"] == "purchase"]


def assert_revenue_matches(
    out: Path, events: list[dict[str, Any]], window_s: float = WINDOW_S, slide_s: float = SLIDE_S
) -> None:
    """``category_revenue`` equals the oracle's hopping windows."""
    size, slide = round(window_s * oracle.MICROS_PER_S), round(slide_s * oracle.MICROS_PER_S)
    expected = oracle.hopping(events, ("category",), size, slide)
    spec = analytics.revenue_spec(window_s, slide_s)
    table = ds.dataset(out / analytics.REVENUE_TABLE).to_table()
    assert table.schema == spec.output_schema()
    rows = oracle.by_key(
        table.to_pylist(), lambda r: (r["category"], oracle.micros(r["window_start"]))
    )
    assert set(rows) == set(expected)
    for key, members in expected.items():
        got, bought = rows[key], _purchases(members)
        assert got["count"] == len(members)
        assert got["orders"] == len(bought)
        assert got["units"] == sum(e["quantity"] for e in bought)
        assert got["revenue"] == pytest.approx(
            sum(e["price"] * e["quantity"] for e in bought), rel=1e-9
        )
        users = len({e["user_id"] for e in members})
        assert abs(got["distinct_user_id"] - users) <= max(1.0, 0.05 * users)
        counts = Counter(e["product_id"] for e in members)
        assert counts.most_common(1)[0][1] == got["topk_product_id"][0]["count"]
        for entry in got["topk_product_id"]:
            assert abs(entry["count"] - counts[entry["item"]]) <= 0.05 * len(members)
        assert got["window_end"] - got["window_start"] == timedelta(seconds=window_s)


def assert_sessions_match(out: Path, events: list[dict[str, Any]]) -> None:
    by_session: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_session.setdefault(event["session_id"], []).append(event)
    table = ds.dataset(out / analytics.SESSIONS_TABLE).to_table()
    assert table.schema == analytics.sessions_spec(1800.0).output_schema()
    rows = oracle.by_key(
        table.to_pylist(), lambda r: (r["user_id"], oracle.micros(r["window_start"]))
    )
    assert len(rows) == len(by_session)  # the generator's sessions, found from event times alone
    for members in by_session.values():
        first = min(e["_us"] for e in members)
        got = rows[(members[0]["user_id"], first)]
        kinds = Counter(e["event_type"] for e in members)
        assert got["count"] == len(members)
        assert (got["views"], got["carts"], got["purchases"]) == (
            kinds["view"],
            kinds["add_to_cart"],
            kinds["purchase"],
        )
        bought = _purchases(members)
        assert got["revenue"] == pytest.approx(
            sum(e["price"] * e["quantity"] for e in bought), rel=1e-9
        )
        assert got["converted"] == bool(bought)
        assert oracle.micros(got["first_event"]) == first
        assert oracle.micros(got["window_end"]) == max(e["_us"] for e in members) + GAP_US


def assert_matches_oracle(out: Path, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    events = oracle.parse_events(messages, ("user_id", "event_type"))
    assert len(events) == EVENTS
    assert_revenue_matches(out, events)
    assert_sessions_match(out, events)
    sessions = ds.dataset(out / analytics.SESSIONS_TABLE).to_table()
    assert count_rows(out / "late") == count_rows(out / "dead_letter") == 0
    assert sum(sessions["count"].to_pylist()) == EVENTS


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_on_a_testing_source_matches_oracle(tmp_path: Path, workers: int) -> None:
    """No broker: the dataflow under bytewax's run_main, or cluster_main with 2 workers."""
    partitions = generated(_generator(), EVENTS, 4)
    settings = FlowSettings(
        target=KafkaTarget("unused:9092"), topic="testing", out=tmp_path, bounded=True,
        window_s=WINDOW_S, slide_s=SLIDE_S,
    )  # fmt: skip
    flow = analytics.build_flow(settings, io=memory_io(partitions))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert_matches_oracle(tmp_path, [(None, value) for part in partitions for value in part])


def test_cli_run_as_os_process_matches_oracle(
    broker: Broker, shop_topic: str, tmp_path: Path
) -> None:
    result = eventlake(
        "run", "analytics", "--bounded", "--topic", shop_topic, "--out", str(tmp_path),
        "--window", "10m", "--slide", "5m", "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_matches_oracle(tmp_path, read_topic(broker.target, shop_topic))


def test_slide_larger_than_window_is_refused(
    broker: Broker, shop_topic: str, tmp_path: Path
) -> None:
    result = eventlake(
        "run", "analytics", "--bounded", "--topic", shop_topic, "--out", str(tmp_path),
        "--window", "5m", "--slide", "10m", "--brokers", broker.target.bootstrap_servers,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--slide must not be larger than --window" in result.stderr
