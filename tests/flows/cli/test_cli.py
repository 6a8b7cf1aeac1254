"""`eventlake --help`: every option of every command shows its env var and default."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flows.cli.main import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=lambda path: " ".join(path) or "eventlake")
def test_every_option_documents_env_var_and_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in {"help", "version"}:
            assert param.help, f"--{param.name} has no help"
            assert param.envvar and str(param.envvar).startswith("EVENTLAKE_")
            assert str(param.envvar) in result.output


def test_env_var_sets_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTLAKE_PRODUCE_DURATION", "soon")
    result = CliRunner().invoke(cli, ["produce", "monitoring"])
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.output


@pytest.mark.parametrize("path", _commands(cli)[1:], ids=" ".join)
def test_every_option_shows_its_default(path: tuple[str, ...]) -> None:
    command = _command(path)
    context = click.Context(command)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            record = param.get_help_record(context)  # what --help prints for this option
            assert record is not None
            if param.required:
                assert "required" in record[1]
                continue
            assert "default: " in record[1], f"{param.opts[0]} shows no default"
            if param.default is not None and not param.is_flag:
                assert f"default: {param.default}" in record[1]


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", _commands(cli)[1:], ids=" ".join)
def test_readme_documents_every_command_and_option(path: tuple[str, ...]) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    row = next(
        (
            line
            for line in readme.splitlines()
            if line.startswith(f"| `eventlake {' '.join(path)} ")
        ),
        None,
    )
    assert row is not None, f"README has no table row for eventlake {' '.join(path)}"
    for param in _command(path).params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.opts[0] in row, f"{param.opts[0]} missing from its README row"
