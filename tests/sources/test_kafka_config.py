"""Kafka client settings: -X pairs, Java properties files, librdkafka's check, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from common.progress import note
from common.secrets import MASK, redacted, scrub
from sources.connection import resolve_target
from sources.kafka_config import check_client_settings, parse_assignments, read_properties


def test_a_properties_file_reads_as_kafkas_tools_read_it(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# a comment\n! another\n\nsecurity.protocol=SASL_SSL\nsasl.mechanism : SCRAM-SHA-512\n"
        "sasl.username alice\nsasl.jaas.extra = a\\\n    b\n"
    )
    assert read_properties(path) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.jaas.extra": "ab",
    }


def test_assignments_need_an_equals_sign() -> None:
    assert parse_assignments(["client.id=me", "linger.ms = 5"]) == {
        "client.id": "me",
        "linger.ms": "5",
    }
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_assignments(["client.id"])


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"no.such.setting": "1"}, 'No such configuration property: "no.such.setting"'),
        ({"security.protocol": "CARRIER_PIGEON"}, 'Invalid value "CARRIER_PIGEON"'),
    ],
)
def test_librdkafka_refuses_what_it_does_not_know(settings: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        check_client_settings(settings)
    with pytest.raises(ConfigError, match=reason):  # before looking for any broker
        resolve_target(None, Path("/nonexistent/state.json"), settings=settings)


def test_secret_values_are_masked_wherever_they_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = parse_assignments(["sasl.password=pa55-word", "my.client.secret=s3cr3t", "a=b"])
    assert redacted(settings) == {"sasl.password": MASK, "my.client.secret": MASK, "a": "b"}
    assert scrub("login pa55-word / s3cr3t failed") == f"login {MASK} / {MASK} failed"
    note("auth with pa55-word failed")
    assert capsys.readouterr().err == f"auth with {MASK} failed\n"
