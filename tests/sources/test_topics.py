"""Topic specs: NAME[:PARTITIONS] and Kafka's naming rules."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from sources.topics import DEFAULT_PARTITIONS, TopicSpec, parse_topic_list, parse_topic_spec


def test_name_alone_gets_default_partitions() -> None:
    assert parse_topic_spec("requests") == TopicSpec("requests", DEFAULT_PARTITIONS)


def test_list_with_partitions() -> None:
    assert parse_topic_list("a:3, b.c_d-e:16,,") == [TopicSpec("a", 3), TopicSpec("b.c_d-e", 16)]


def test_empty_list_has_no_topics() -> None:
    assert parse_topic_list("") == []


@pytest.mark.parametrize("bad", ["a:x", "a:", "a:-1", "a/b", "..", "", "a" * 250, "a:0"])
def test_invalid_specs_name_the_fix(bad: str) -> None:
    with pytest.raises(ConfigError, match="topic"):
        parse_topic_spec(bad)


def test_spec_prints_as_it_parses() -> None:
    assert str(parse_topic_spec("events:12")) == "events:12"
