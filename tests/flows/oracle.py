"""Independent batch computations of what the flows should output (numpy, plain Python).

They read the raw messages back from the topic, parse them with ``json`` and
compute per group with numpy, sharing no code with the engine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np

MICROS_PER_S = 1_000_000


def parse_events(
    messages: Iterable[tuple[bytes | None, bytes | None]], required: tuple[str, ...]
) -> list[dict[str, Any]]:
    """JSON objects with a parseable ``ts`` and every ``required`` field non-null."""
    events = []
    for _, value in messages:
        try:
            event = json.loads(value or b"")
            event["_us"] = to_micros(event["ts"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if all(event.get(field) is not None for field in required):
            events.append(event)
    return events


def to_micros(ts: str) -> int:
    """ISO-8601 text → microseconds since the epoch."""
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return round(parsed.timestamp() * MICROS_PER_S)


def tumbling(
    events: list[dict[str, Any]], keys: tuple[str, ...], size_us: int
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Events grouped by (key..., window start)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        start = event["_us"] - event["_us"] % size_us
        groups[(*[event[k] for k in keys], start)].append(event)
    return groups


def hopping(
    events: list[dict[str, Any]], keys: tuple[str, ...], size_us: int, slide_us: int
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Events grouped by (key..., window start) for every window containing them."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        start = event["_us"] - event["_us"] % slide_us
        while start + size_us > event["_us"]:
            groups[(*[event[k] for k in keys], start)].append(event)
            start -= slide_us
    return groups


def sessions(
    events: list[dict[str, Any]], key: str, gap_us: int, max_us: int | None = None
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Events grouped by (key, session start): a new session after a gap of ``gap_us`` or
    more, and with ``max_us`` at every multiple of it since the epoch."""
    by_key: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_key[event[key]].append(event)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for value, members in by_key.items():
        members.sort(key=lambda e: e["_us"])
        current = [members[0]]
        for event in members[1:]:
            crossed = max_us is not None and event["_us"] // max_us != current[0]["_us"] // max_us
            if event["_us"] - current[-1]["_us"] >= gap_us or crossed:
                groups[(value, current[0]["_us"])] = current
                current = []
            current.append(event)
        groups[(value, current[0]["_us"])] = current
    return groups


def rank_of(values: np.ndarray, result: float) -> float:
    """Normalized rank of ``result`` among ``values``."""
    return float(np.searchsorted(np.sort(values), result, side="right") / len(values))


def assert_quantile(values: list[float], quantile: float, result: float) -> None:
    """``result`` is within the KLL rank error (k=200: 1.33% at 99%; 2% allowed) of the quantile."""
    array = np.asarray(values, dtype=np.float64)
    tolerance = 0.02 + 1 / len(array)
    assert abs(rank_of(array, result) - quantile) <= tolerance, (quantile, result)


def by_key(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows indexed by ``key``; fails if two rows share a key (a window emitted twice)."""
    indexed = {key(row): row for row in rows}
    assert len(indexed) == len(rows), "a window was emitted twice"
    return indexed


def micros(value: datetime) -> int:
    """A timezone-aware datetime → microseconds since the epoch."""
    return round(value.timestamp() * MICROS_PER_S)


def assert_capped_sessions(
    got: dict[tuple[Any, int], dict[str, Any]],
    expected: dict[tuple[Any, int], list[dict[str, Any]]],
    gap_us: int,
    longest_us: int,
) -> None:
    """``got`` (rows by (key, window_start in µs)) are exactly the ``expected`` sessions
    (:func:`sessions` with ``longest_us``): the same sessions, counts, and each ending a
    gap after its last event or at its cut, whichever comes first."""
    assert set(got) == set(expected)
    for (key, start), members in expected.items():
        last = max(member["_us"] for member in members)
        assert got[(key, start)]["count"] == len(members)
        end = min(last + gap_us, (start // longest_us + 1) * longest_us)
        assert micros(got[(key, start)]["window_end"]) == end
