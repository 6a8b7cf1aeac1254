"""Statistical and contract tests of the seeded event generators (no broker needed)."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice, pairwise
from typing import Any

import numpy as np
import pytest

from sources.generators import (
    GENERATORS,
    AnalyticsGenerator,
    EventGenerator,
    MonitoringGenerator,
    format_ts,
)
from sources.generators.base import epoch_ms

N = 50_000
START = datetime(2024, 5, 1, 12, 58, tzinfo=UTC)
TS_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
Event = dict[str, Any]


def take(gen: EventGenerator, n: int = N) -> list[Event]:
    return list(islice(gen.events(), n))


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def ms_of(ts: str) -> int:
    return (parse(ts) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def rate(events: Iterable[Event]) -> float:
    """Events per second of event time between the 1st and 99th percentile timestamps."""
    millis = sorted(ms_of(e["ts"]) for e in events)
    low, high = len(millis) // 100, len(millis) - 1 - len(millis) // 100
    return (high - low) * 1000.0 / (millis[high] - millis[low])


@pytest.fixture(scope="module")
def monitoring() -> list[Event]:
    return take(MonitoringGenerator(seed=7, start=START, events_per_second=20.0))


@pytest.fixture(scope="module")
def analytics() -> list[Event]:
    return take(AnalyticsGenerator(seed=3, start=START, events_per_second=20.0, users=5_000))


# --- shared contract -------------------------------------------------------------------


def test_registry_names_topics_and_keys() -> None:
    assert {"monitoring": MonitoringGenerator, "analytics": AnalyticsGenerator} == GENERATORS
    assert (MonitoringGenerator.default_topic, MonitoringGenerator.key_field) == (
        "requests",
        "service",
    )
    assert (AnalyticsGenerator.default_topic, AnalyticsGenerator.key_field) == ("shop", "user_id")
    for name, cls in GENERATORS.items():
        gen = cls(seed=1, start=START)
        event = next(iter(gen.events()))
        assert cls.name == name
        assert gen.key_of(event) == event[cls.key_field].encode()


def test_format_ts_is_utc_with_truncated_milliseconds() -> None:
    assert format_ts(datetime(2024, 5, 1, 13, 0, 0, 123999, tzinfo=UTC)) == (
        "2024-05-01T13:00:00.123Z"
    )
    plus_two = timezone(timedelta(hours=2))
    assert format_ts(datetime(2024, 5, 1, 15, 0, tzinfo=plus_two)) == "2024-05-01T13:00:00.000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2024, 5, 1))  # noqa: DTZ001 - the naive value under test


@pytest.mark.parametrize("cls", [MonitoringGenerator, AnalyticsGenerator])
def test_naive_start_rejected(cls: type[EventGenerator]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cls(start=datetime(2024, 5, 1))  # noqa: DTZ001 - the naive value under test


@pytest.mark.parametrize(
    "kwargs",
    [
        {"events_per_second": 0.0},
        {"events_per_second": math.nan},
        {"seed": -1},
        {"disorder": 1.5},
        {"max_delay_s": -1.0},
    ],
)
def test_invalid_monitoring_parameters_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MonitoringGenerator(start=START, **kwargs)


def test_invalid_user_pool_rejected() -> None:
    with pytest.raises(ValueError, match="users"):
        AnalyticsGenerator(start=START, users=0)


@pytest.mark.parametrize("cls", [MonitoringGenerator, AnalyticsGenerator])
def test_default_start_is_now_truncated_to_seconds(cls: type[EventGenerator]) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    gen = cls()
    assert before <= gen.start <= datetime.now(UTC)
    assert gen.start.microsecond == 0
    assert gen.start.utcoffset() == timedelta(0)


@pytest.mark.parametrize("cls", [MonitoringGenerator, AnalyticsGenerator])
def test_same_seed_same_events_other_seed_different(cls: type[EventGenerator]) -> None:
    first = take(cls(seed=5, start=START), 10_000)
    again = cls(seed=5, start=START)
    assert take(again, 10_000) == first
    assert take(again, 10_000) == first  # events() restarts the stream
    assert take(cls(seed=6, start=START), 10_000) != first


# --- monitoring ------------------------------------------------------------------------


def test_monitoring_schema(monitoring: list[Event]) -> None:
    keys = {"ts", "service", "endpoint", "region", "status", "latency_ms", "trace_id"}
    types = {"ts": str, "service": str, "endpoint": str, "region": str, "status": int}
    endpoints = {(s.name, e.path) for s in MonitoringGenerator.SERVICES for e in s.endpoints}
    regions = {name for name, _ in MonitoringGenerator.REGIONS}
    for e in monitoring:
        assert set(e) == keys
        assert all(type(e[k]) is t for k, t in types.items())
        assert type(e["latency_ms"]) is float and round(e["latency_ms"], 3) == e["latency_ms"]
        assert e["latency_ms"] > 0
        assert re.fullmatch(r"[0-9a-f]{16}", e["trace_id"])
        assert TS_FORMAT.fullmatch(e["ts"]) and format_ts(parse(e["ts"])) == e["ts"]
        assert (e["service"], e["endpoint"]) in endpoints and e["region"] in regions
    assert {(e["service"], e["endpoint"]) for e in monitoring} == endpoints
    assert len({e["trace_id"] for e in monitoring}) == len(monitoring)


def test_service_shares_follow_the_catalogue(monitoring: list[Event]) -> None:
    counts = Counter(e["service"] for e in monitoring)
    for service in MonitoringGenerator.SERVICES:
        assert counts[service.name] / len(monitoring) == pytest.approx(service.share, abs=0.01)


def test_latency_medians_follow_endpoint_order(monitoring: list[Event]) -> None:
    samples: dict[str, list[float]] = defaultdict(list)
    for e in monitoring:
        samples[e["endpoint"]].append(e["latency_ms"])
    declared = sorted(
        (ep.median_ms, ep.path) for s in MonitoringGenerator.SERVICES for ep in s.endpoints
    )
    observed = [statistics.median(samples[path]) for _, path in declared]
    assert observed == sorted(observed) and len(set(observed)) == len(observed)
    for (median, path), got in zip(declared, observed, strict=True):
        assert got == pytest.approx(median, rel=0.1), path
    assert declared[0][0] <= 5 and declared[-1][0] >= 200


def _normal_tail(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2))


def _expected_above_five_medians(sigma: float) -> float:
    """P(latency > 5 x median) under the stated log-normal-plus-spikes model."""
    p, (low, high) = MonitoringGenerator.SPIKE_PROBABILITY, MonitoringGenerator.SPIKE_FACTOR
    grid = [low + (high - low) * (i + 0.5) / 1000 for i in range(1000)]
    spiked = sum(_normal_tail((math.log(5) - math.log(f)) / sigma) for f in grid) / len(grid)
    return (1 - p) * _normal_tail(math.log(5) / sigma) + p * spiked


def test_spike_fraction_matches_the_model(monitoring: list[Event]) -> None:
    endpoints = {ep.path: ep for s in MonitoringGenerator.SERVICES for ep in s.endpoints}
    observed = sum(e["latency_ms"] > 5 * endpoints[e["endpoint"]].median_ms for e in monitoring)
    counts = Counter(e["endpoint"] for e in monitoring)
    expected = sum(n * _expected_above_five_medians(endpoints[p].sigma) for p, n in counts.items())
    assert MonitoringGenerator.SPIKE_PROBABILITY == 0.005
    assert observed == pytest.approx(expected, rel=0.25)
    assert observed / len(monitoring) == pytest.approx(0.005, rel=0.3)


def _error_rate(events: list[Event], low: int, high: int) -> float:
    return sum(low <= int(e["status"]) < high for e in events) / len(events)


def test_payments_5xx_burst_window(monitoring: list[Event]) -> None:
    burst = MonitoringGenerator.BURSTS["payments"]
    assert (burst.period_s, burst.duration_s) == (600, 60)
    seconds = np.array([epoch_ms(parse(e["ts"])) // 1000 for e in monitoring])
    in_burst = burst.active(seconds)
    inside = [e for e, burst_on in zip(monitoring, in_burst, strict=True) if burst_on]
    outside = [e for e, burst_on in zip(monitoring, in_burst, strict=True) if not burst_on]
    pay_in = [e for e in inside if e["service"] == "payments"]
    pay_out = [e for e in outside if e["service"] == "payments"]
    assert len(pay_in) > 300  # the sample spans four bursts
    assert _error_rate(pay_in, 500, 600) == pytest.approx(burst.error_rate, abs=0.08)
    assert _error_rate(pay_out, 500, 600) < 0.025
    others_in = [e for e in inside if e["service"] != "payments"]
    assert _error_rate(others_in, 500, 600) < 0.025


def test_base_status_mix(monitoring: list[Event]) -> None:
    calm = [e for e in monitoring if e["service"] != "payments"]
    assert _error_rate(calm, 500, 600) == pytest.approx(0.01, abs=0.003)
    assert _error_rate(calm, 400, 500) == pytest.approx(0.03, abs=0.005)
    assert {e["status"] for e in monitoring} == {200, 400, 404, 429, 500, 502, 503}


def _lateness_ms(events: list[Event]) -> list[int]:
    """For each event after the first: how far its ts is behind the max ts before it."""
    result, high = [], ms_of(events[0]["ts"])
    for e in events[1:]:
        ts = ms_of(e["ts"])
        result.append(max(0, high - ts))
        high = max(high, ts)
    return result


def test_out_of_order_fraction_and_bound(monitoring: list[Event]) -> None:
    lateness = _lateness_ms(monitoring)
    late = [x for x in lateness if x > 0]
    assert len(late) / len(lateness) == pytest.approx(0.05, abs=0.008)
    assert max(late) <= 3_000
    assert max(late) > 2_500 and statistics.median(late) == pytest.approx(1_500, rel=0.15)


def test_no_disorder_means_ordered_nominal_times() -> None:
    gen = MonitoringGenerator(seed=2, start=START, events_per_second=200.0, disorder=0.0)
    events = take(gen, 20_000)
    assert max(_lateness_ms(events)) == 0
    assert events[0]["ts"] == format_ts(START)
    assert events[1000]["ts"] == format_ts(START + timedelta(seconds=5))


@pytest.mark.parametrize("eps", [20.0, 200.0, 3_000.0])
def test_monitoring_event_rate(eps: float) -> None:
    gen = MonitoringGenerator(seed=4, start=START, events_per_second=eps, disorder=0.0)
    events = take(gen, 20_000)
    assert rate(events) == pytest.approx(eps, rel=0.005)


def test_monitoring_event_rate_with_disorder(monitoring: list[Event]) -> None:
    assert rate(monitoring) == pytest.approx(20.0, rel=0.01)


# --- analytics -------------------------------------------------------------------------


def test_analytics_schema(analytics: list[Event]) -> None:
    keys = {"ts", "user_id", "session_id", "event_type", "product_id", "category"}
    keys |= {"price", "quantity"}
    for e in analytics:
        assert set(e) == keys
        assert all(type(e[k]) is str for k in keys - {"price", "quantity"})
        assert type(e["price"]) is float and round(e["price"], 2) == e["price"] > 0
        assert type(e["quantity"]) is int
        assert e["event_type"] in {"view", "add_to_cart", "purchase"}
        assert TS_FORMAT.fullmatch(e["ts"]) and format_ts(parse(e["ts"])) == e["ts"]


def test_ts_non_decreasing_and_rate(analytics: list[Event]) -> None:
    stamps = [e["ts"] for e in analytics]
    assert stamps == sorted(stamps)
    assert parse(stamps[0]) >= START
    assert rate(analytics) == pytest.approx(20.0, rel=0.03)


@pytest.mark.parametrize("eps", [2.0, 200.0, 5_000.0])
def test_analytics_event_rate(eps: float) -> None:
    events = take(AnalyticsGenerator(seed=8, start=START, events_per_second=eps), 30_000)
    assert rate(events) == pytest.approx(eps, rel=0.03)


def test_funnel_ratios(analytics: list[Event]) -> None:
    counts = Counter(e["event_type"] for e in analytics)
    share = {kind: n / len(analytics) for kind, n in counts.items()}
    assert counts["view"] > 5 * counts["add_to_cart"] > 5 * counts["purchase"]
    assert 0.80 <= share["view"] <= 0.90
    assert 0.07 <= share["add_to_cart"] <= 0.13
    assert 0.03 <= share["purchase"] <= 0.05


def test_quantities(analytics: list[Event]) -> None:
    by_type: dict[str, set[int]] = defaultdict(set)
    for e in analytics:
        by_type[e["event_type"]].add(e["quantity"])
    assert by_type == {"view": {1}, "add_to_cart": {1, 2, 3}, "purchase": {1, 2, 3}}


def test_purchases_are_of_products_carted_earlier_in_the_session(analytics: list[Event]) -> None:
    carts: dict[str, dict[str, int]] = defaultdict(dict)
    for e in analytics:
        cart = carts[e["session_id"]]
        if e["event_type"] == "add_to_cart":
            cart[e["product_id"]] = e["quantity"]
        elif e["event_type"] == "purchase":
            assert cart.pop(e["product_id"]) == e["quantity"]


def test_product_popularity_is_zipf_like(analytics: list[Event]) -> None:
    views = Counter(e["product_id"] for e in analytics if e["event_type"] == "view")
    total = sum(views.values())
    top = [product for product, _ in views.most_common(10)]
    assert sum(views[p] for p in top) / total > 0.25
    assert top[0] == "p0000"
    ranked = [views[f"p{i:04d}"] for i in range(1000)]
    assert sum(ranked[:10]) > 2 * sum(ranked[10:20]) > 2 * sum(ranked[100:110])


def test_product_category_and_price_are_fixed(analytics: list[Event]) -> None:
    other = take(AnalyticsGenerator(seed=99, start=START, events_per_second=20.0), 20_000)
    attributes: dict[str, set[tuple[str, float]]] = defaultdict(set)
    for e in analytics + other:
        attributes[e["product_id"]].add((e["category"], e["price"]))
    assert all(len(values) == 1 for values in attributes.values())
    assert len({c for values in attributes.values() for c, _ in values}) == 8
    assert len({p for values in attributes.values() for _, p in values}) > 100


def _sessions(events: list[Event]) -> dict[str, list[Event]]:
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        sessions[e["session_id"]].append(e)
    return sessions


def test_sessions_are_compact_and_start_with_a_view(analytics: list[Event]) -> None:
    gap = AnalyticsGenerator.SESSION_GAP
    for events in _sessions(analytics).values():
        assert events[0]["event_type"] == "view"
        assert len({e["user_id"] for e in events}) == 1
        stamps = [parse(e["ts"]) for e in events]
        assert all(b - a < gap for a, b in pairwise(stamps))


def test_same_user_sessions_are_separated_by_the_session_gap(analytics: list[Event]) -> None:
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for events in _sessions(analytics).values():
        spans[events[0]["user_id"]].append((parse(events[0]["ts"]), parse(events[-1]["ts"])))
    pairs = 0
    for user_spans in spans.values():
        user_spans.sort()
        for (_, end), (begin, _) in pairwise(user_spans):
            assert begin - end >= AnalyticsGenerator.SESSION_GAP
            pairs += 1
    assert pairs >= 50  # users do come back, so the rule was exercised
