"""Flows are values, resolved by name, pipeline file or module:attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from flows import analytics, monitoring
from flows.registry import resolve_flow
from flows.runtime.dataflow import SHARED_TABLES


def test_built_in_names_and_module_attributes_resolve_to_the_same_flow() -> None:
    assert resolve_flow("monitoring") is monitoring.FLOW
    assert resolve_flow("flows.analytics:FLOW") is analytics.FLOW
    assert monitoring.FLOW.tables == (monitoring.TABLE, monitoring.ALERTS_TABLE, *SHARED_TABLES)


def test_a_pipeline_file_is_a_flow_named_after_it(tmp_path: Path) -> None:
    path = tmp_path / "delays.toml"
    path.write_text(
        'topic = "flights"\ntime_field = "t"\nlateness = "1h"\n[[aggregation]]\n'
        'key = ["carrier"]\nwindow = "1h"\nagg = ["count"]\n[kafka]\n"client.id" = "x"\n'
    )
    flow = resolve_flow(str(path))
    assert (flow.name, flow.default_topic, flow.tables) == (str(path), "flights",
                                                           ("windows", *SHARED_TABLES))  # fmt: skip
    assert (flow.lateness_s, dict(flow.kafka)) == (3600.0, {"client.id": "x"})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown flow 'nope'; choose from ['analytics', 'monitoring']"),
        ("flows.nothing_here:FLOW", "cannot load flow 'flows.nothing_here:FLOW'"),
        ("flows.monitoring:TABLE", "flows.monitoring:TABLE is a str, not a"),
    ],
)
def test_anything_else_is_refused_naming_the_choices(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_flow(name)
