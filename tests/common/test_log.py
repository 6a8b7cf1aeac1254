"""Diagnostics go through the eventlake logger; --log-level sets what is shown."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from common.log import DEFAULT_LOG_LEVEL, LOGGER, configure_logging
from tests.helpers import eventlake


@pytest.fixture
def warnings_only() -> Iterator[None]:
    configure_logging("warning")
    yield
    configure_logging(DEFAULT_LOG_LEVEL)


def test_records_below_the_level_are_not_shown(
    warnings_only: None, capsys: pytest.CaptureFixture[str]
) -> None:
    LOGGER.info("resuming from epoch 3")
    LOGGER.warning("Kafka does not answer")
    assert capsys.readouterr().err == "Kafka does not answer\n"


def test_the_log_level_flag_hides_the_retries_but_not_the_error() -> None:
    unreachable = ["run", "monitoring", "--brokers", "127.0.0.1:1", "--broker-timeout", "8s"]
    shown = eventlake(*unreachable)
    hidden = eventlake("--log-level", "error", *unreachable)
    assert shown.returncode == hidden.returncode == 2
    assert "retrying" in shown.stderr and "retrying" not in hidden.stderr
    assert "error: cannot reach Kafka at 127.0.0.1:1" in hidden.stderr


def test_json_lines_carry_level_logger_and_masked_message() -> None:
    result = eventlake(
        "--log-format", "json", "run", "monitoring", "-X", "sasl.password=pw-Q7",
        "--brokers", "127.0.0.1:1", "--broker-timeout", "8s",
    )  # fmt: skip
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records and all(r["logger"] == "eventlake" for r in records)
    assert {"warning"} == {r["level"] for r in records}
    assert all("does not answer" in r["message"] for r in records)
    assert "pw-Q7" not in result.stderr
