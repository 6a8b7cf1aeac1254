"""`eventlake aggregate` on messy real-world input: every case lands where it should."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from flows.pipelines.config import PipelineConfig, aggregation_config, window_spec
from flows.pipelines.flow import WINDOWS_TABLE, pipeline_flow
from flows.runtime.runner import run_dataflow
from flows.runtime.settings import FlowSettings
from tests.conftest import Broker, NewTopic
from tests.helpers import produce_raw

LONG_KEY = "x" * 5000
GOOD: list[tuple[dict[str, Any], str | None, float | None]] = [
    # (message, the key it must count under, its value; None = ignored by value aggregates)
    ({"t": "2024-05-01T12:00:00Z", "req": {"svc": "a"}, "v": 1}, "a", 1),
    ({"t": "2024-05-01T14:01:00+02:00", "req": {"svc": "a"}, "v": 2}, "a", 2),
    ({"t": "2024-05-01T12:02:00.250Z", "req": {"svc": "a"}, "v": "3"}, "a", 3),
    ({"t": 1714564980, "req": {"svc": "b"}, "v": 4}, "b", 4),
    ({"t": 1714565040000, "req": {"svc": "b"}, "v": None}, "b", None),
    ({"t": "1714565100", "req": {"svc": "b"}}, "b", None),
    ({"t": "1714565160000", "req": {"svc": "b"}, "v": 10.5}, "b", 10.5),
    ({"t": "2024-05-01T12:07:00Z", "v": 5}, None, 5),
    ({"t": "2024-05-01T12:08:00Z", "req": {"svc": None}, "v": 6}, None, 6),
    ({"t": "2024-05-01T12:09:00Z", "req": {"svc": "日本"}, "v": 7}, "日本", 7),
    ({"t": "2024-05-01T12:10:00Z", "req": {"svc": LONG_KEY}, "v": 8}, LONG_KEY, 8),
    ({"t": "2024-05-01T12:11:00", "req": {"svc": 42}, "v": 9}, "42", 9),
]
NOT_A_NUMBER = {"t": "2024-05-01T12:06:00Z", "req": {"svc": "b"}, "v": "abc"}
DEAD = {
    json.dumps({"t": "tomorrow", "req": {"svc": "a"}, "v": 1}).encode(): 'cannot read "tomorrow"',
    b"[1, 2]": "not a JSON object but an array",
    b'{"t": "2024-05-01T12:00:00Z", "v": ': "not JSON",
    b"\xff\xfe": "not UTF-8",
    b'{"v": 1}': "time field 't' is missing or null",
}


def run(
    broker: Broker, topic: str, out: Path, **options: Any
) -> tuple[dict[Any, Any], dict[bytes, str]]:
    """Aggregate ``topic`` per req.svc and hour; (rows by key, dead-letter reasons by message)."""
    table = aggregation_config(
        WINDOWS_TABLE, ["req.svc"], ["v"], ["count", "sum"], window_spec(3600.0, None, None)
    )
    flow = pipeline_flow(PipelineConfig(topic, "t", (table,), **options))
    run_dataflow(flow.build(FlowSettings(target=broker.target, topic=topic, out=out, bounded=True)))
    rows = ds.dataset(out / WINDOWS_TABLE).to_table().to_pylist()
    dead = ds.dataset(out / "dead_letter").to_table().to_pylist()
    return {row["req.svc"]: row for row in rows}, {d["value"]: d["error"] for d in dead}


@pytest.fixture
def messy_topic(broker: Broker, new_topic: NewTopic) -> str:
    topic = new_topic(partitions=2)
    messages = [json.dumps(m, ensure_ascii=False).encode() for m, _, _ in GOOD]
    produce_raw(broker.target, topic, [*messages, json.dumps(NOT_A_NUMBER).encode(), *DEAD])
    return topic


def expected(strict: bool) -> dict[Any, tuple[int, float | None, int]]:
    """(count, sum, invalid_values) per key, from the table above."""
    cases = [(key, value) for _, key, value in GOOD]
    if not strict:
        cases.append(("b", None))
    result: dict[Any, tuple[int, float | None, int]] = {}
    for key in {key for key, _ in cases}:
        values = [v for k, v in cases if k == key and v is not None]
        invalid = 1 if key == "b" and not strict else 0
        result[key] = (
            sum(k == key for k, _ in cases),
            float(sum(values)) if values else None,
            invalid,
        )
    return result


@pytest.mark.parametrize("strict", [False, True])
def test_every_messy_case_is_counted_or_dead_lettered_with_a_reason(
    broker: Broker, messy_topic: str, tmp_path: Path, strict: bool
) -> None:
    rows, dead = run(broker, messy_topic, tmp_path, strict=strict)
    got = {key: (r["count"], r["sum_v"], r["invalid_values"]) for key, r in rows.items()}
    assert got == expected(strict)
    assert all(r["window_start"].hour == 12 for r in rows.values())
    reasons = dict(DEAD)
    if strict:
        reasons[json.dumps(NOT_A_NUMBER).encode()] = "field 'v' is not a number: \"abc\" (--strict)"
    assert set(dead) == set(reasons)
    for message, reason in reasons.items():
        assert reason in dead[message]


def test_a_forced_time_format_dead_letters_the_other_forms(
    broker: Broker, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    iso = json.dumps({"t": "2024-05-01T12:00:00Z", "req": {"svc": "a"}, "v": 1}).encode()
    millis = json.dumps({"t": 1714564800000, "req": {"svc": "a"}, "v": 2}).encode()
    text_millis = json.dumps({"t": "1714564800000", "req": {"svc": "a"}, "v": 3}).encode()
    produce_raw(broker.target, topic, [iso, millis, text_millis])

    rows, dead = run(broker, topic, tmp_path / "iso", time_format="iso")
    assert rows["a"]["count"] == 1
    assert set(dead) == {millis, text_millis}
    assert all("as ISO-8601 text (--time-format iso)" in reason for reason in dead.values())

    rows, dead = run(broker, topic, tmp_path / "ms", time_format="epoch_ms")
    assert (rows["a"]["count"], rows["a"]["sum_v"]) == (2, 5.0)
    assert rows["a"]["window_start"].hour == 12
    assert list(dead) == [iso] and "epoch milliseconds (--time-format epoch_ms)" in dead[iso]
