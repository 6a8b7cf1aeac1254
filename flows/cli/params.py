"""Click parameter types and helpers: every flag has an ``EVENTLAKE_*`` variable, and
groups of flags become one settings value (:func:`option_group`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from common.errors import ConfigError
from common.units import parse_duration, parse_size
from sources.kafka_config import setting_lines

F = TypeVar("F", bound=Callable[..., Any])
Flag = Callable[[F], F]
"""A click option decorator."""


ENV_PREFIX = "EVENTLAKE_"
"""What the environment variable of every flag starts with."""


def env_option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``EVENTLAKE_<env>`` and shows it and its default."""
    return click.option(
        *decls, envvar=f"{ENV_PREFIX}{env}", show_envvar=True, show_default=True, **kwargs
    )


class Duration(click.ParamType[float | None]):
    """A flag value like ``30s`` or ``5m``, converted to seconds; with ``allow_none``,
    ``none`` means no limit (None); with ``allow_zero``, ``0s`` is accepted."""

    name = "DURATION"

    def __init__(self, allow_none: bool = False, allow_zero: bool = False) -> None:
        self.allow_none = allow_none
        self.allow_zero = allow_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or (self.allow_none and str(value).strip().lower() == "none"):
            return None
        try:
            if isinstance(value, float):
                return value
            return parse_duration(str(value), self.allow_zero).total_seconds()
        except ConfigError as err:
            self.fail(str(err), param, ctx)


class Limit(click.ParamType[int | None]):
    """A flag value that is a positive whole number, or ``none`` for no limit (None)."""

    name = "N"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().replace(",", "").replace("_", "")
        if text.lower() == "none":
            return None
        if not text.isdigit() or int(text) < 1:
            self.fail(f"{value!r} is not a positive whole number (e.g. 500000) or none", param, ctx)
        return int(text)


class ByteSize(click.ParamType[int]):
    """A flag value like ``128MB``, converted to bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return value if isinstance(value, int) else parse_size(str(value))
        except ConfigError as err:
            self.fail(str(err), param, ctx)


class ClientSetting(click.ParamType[str]):
    """A ``-X`` value, ``KEY=VALUE`` (checked by the command); its environment variable
    holds one per line, since a value may contain spaces (see :func:`setting_lines`)."""

    name = "KEY=VALUE"

    def split_envvar_value(self, rv: str) -> list[str]:
        return setting_lines(rv)


class UtcTime(click.ParamType[datetime]):
    """A flag value in ISO-8601 with a timezone, converted to an aware datetime."""

    name = "ISO-8601"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not ISO-8601, e.g. 2024-05-01T13:00:00Z", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no timezone; add Z or an offset like +02:00", param, ctx)
        return parsed


def _with_options(command: Callable[..., Any], options: list[Flag[Any]]) -> Any:
    for option in reversed(options):
        command = option(command)
    return command


def option_group(
    into: str, flags: list[Flag[Any]], make: Callable[..., Any]
) -> Callable[[Callable[..., Any]], Any]:
    """A decorator that adds ``flags`` to a command and passes it, as ``into``, what
    ``make`` builds of their values (``make``'s parameters are named after the flags)."""
    names = list(inspect.signature(make).parameters)

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def with_group(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(*args, **{into: make(**values)}, **kwargs)

        return _with_options(with_group, flags)

    return decorate
