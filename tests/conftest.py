"""Shared fixtures: one embedded broker process per test session, topics per test."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sources.broker import EmbeddedBroker
from sources.target import KafkaTarget
from sources.topics import TopicSpec

BROKER_FIXTURES = frozenset({"broker", "new_topic", "demo_output"})
"""Fixtures that start an embedded broker: tests using one are ``integration`` tests."""
DEMO_MONITORING_EVENTS = 60_000
DEMO_ANALYTICS_EVENTS = 30_000

_topic_numbers = itertools.count()


@dataclass(frozen=True)
class Broker:
    """The session's embedded broker and a way to make fresh topics on it."""

    process: EmbeddedBroker
    target: KafkaTarget

    def new_topic(self, prefix: str, partitions: int = 4) -> str:
        """Create a topic with a name no other test uses; return the name."""
        name = f"{prefix}-{next(_topic_numbers)}"
        self.process.create_topic(TopicSpec(name, partitions))
        return name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a broker ``integration``, so that
    ``pytest -m "not integration"`` is the fast loop that starts none."""
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """An ``eventlake broker`` process shared by the whole session."""
    embedded = EmbeddedBroker()
    with embedded as bootstrap:
        assert bootstrap == embedded.target.bootstrap_servers
        yield Broker(embedded, embedded.target)


NewTopic = Callable[..., str]


@pytest.fixture
def new_topic(broker: Broker, request: pytest.FixtureRequest) -> NewTopic:
    """``new_topic(partitions=4)`` creates a topic named after the calling test."""
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    return lambda partitions=4: broker.new_topic(prefix, partitions)


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ``eventlake demo`` run (its own broker): every table of both flows."""
    out = tmp_path_factory.mktemp("demo") / "output"
    demo = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--out", str(out),
         "--monitoring-events", str(DEMO_MONITORING_EVENTS), "--analytics-events",
         str(DEMO_ANALYTICS_EVENTS)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    return out
