"""Flag groups shared by commands: processes of a multi-process run."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from flows.runtime.runner import Processes, parse_processes
from flows.runtime.supervisor import child_command, child_environment, free_addresses
from tests.helpers import eventlake


def test_one_process_needs_no_flags() -> None:
    assert parse_processes(None, None) == Processes()


def test_addresses_name_every_process() -> None:
    assert parse_processes(1, "a:1; b:2") == Processes(1, ("a:1", "b:2"))


@pytest.mark.parametrize(
    ("process_id", "addresses", "message"),
    [
        (1, None, "needs --addresses"),
        (None, "a:1;b:2", "--process-id must be given"),
        (2, "a:1;b:2", "below 2"),
        (0, "a:1;b", "HOST:PORT"),
        (0, ";", "HOST:PORT"),
    ],
)
def test_inconsistent_process_flags_name_the_fix(
    process_id: int | None, addresses: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_processes(process_id, addresses)


def test_the_cli_refuses_them_before_anything_starts() -> None:
    refused = eventlake("run", "monitoring", "-i", "3", "-a", "127.0.0.1:1;127.0.0.1:2")
    assert refused.returncode == 2 and "--process-id must be given and below 2" in refused.stderr


def test_processes_start_a_local_run_of_their_own() -> None:
    assert parse_processes(None, None, spawn=3) == Processes(spawn=3)
    for process_id, addresses in ((0, "a:1;b:2"), (0, None), (None, "a:1;b:2")):
        with pytest.raises(ConfigError, match="either --processes or --process-id"):
            parse_processes(process_id, addresses, spawn=2)
    refused = eventlake("run", "monitoring", "--processes", "0")
    assert refused.returncode == 2 and "--processes" in refused.stderr


def test_a_child_is_the_same_command_without_processes_nor_metrics_port() -> None:
    arguments = ["run", "x", "--processes", "2", "--out", "o", "--processes=3", "--bounded",
                 "--metrics-port", "9100", "--metrics-port=9101"]  # fmt: skip
    assert child_command(arguments) == (["run", "x", "--out", "o", "--bounded"], [])
    parent = {"EVENTLAKE_METRICS_PORT": "9100", "EVENTLAKE_RUN_TOPIC": "t", "HOME": "/h"}
    child = child_environment(parent, 1, "a:1;b:2", [])
    assert "EVENTLAKE_METRICS_PORT" not in child, "the supervisor serves /metrics"
    assert child["EVENTLAKE_RUN_TOPIC"] == "t" and child["EVENTLAKE_PROCESS_ID"] == "1"
    addresses = free_addresses(3)
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
