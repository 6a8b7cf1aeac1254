"""Single JSON messages and values: a message parsed on its own, JSON scalars as key text,
and the words of a dead letter's reason (which field, what it holds, what it takes).

JSON text must be UTF-8 and its strings valid Unicode (RFC 8259); a message that is not
is a dead letter naming the field whose name or text breaks the rule.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

from common.errors import InvalidMessageError

_JSON_KINDS = {type(None): "null", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", dict: "an object"}  # fmt: skip


def parse_object(value: bytes | None) -> dict[str, Any]:
    """``value`` parsed as a JSON object, or InvalidMessageError saying why it is not one."""
    if not value:
        raise InvalidMessageError("empty message")
    try:
        parsed = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidMessageError(_not_utf8(value, err)) from None
    except json.JSONDecodeError as err:
        raise InvalidMessageError(f"not JSON: {err}") from None
    except RecursionError:
        raise InvalidMessageError("not JSON this decoder can read: nested too deeply") from None
    if not isinstance(parsed, dict):
        kind = _JSON_KINDS.get(type(parsed), type(parsed).__name__)
        raise InvalidMessageError(f"not a JSON object but {kind}")
    return parsed


def _not_utf8(value: bytes, error: UnicodeDecodeError) -> str:
    """Why ``value`` is refused, naming the field whose name or text holds the bytes that
    are not UTF-8 when the message is JSON otherwise."""
    reason = f"not UTF-8 (JSON text must be): {error}"
    try:
        parsed = json.loads(value.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return reason
    path = _path_to_bad_text(parsed, "")
    return reason if path is None else f"field {path!r} is {reason}"


def _path_to_bad_text(node: Any, path: str) -> str | None:
    """The dotted path of the first name or text under ``node`` holding bytes that were
    not UTF-8 (decoded with ``surrogateescape``)."""
    if isinstance(node, str):
        return path if unicode_problem(node) is not None else None
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for name, child in children:
        inner = f"{path}.{name}" if path else str(name)
        if isinstance(name, str) and unicode_problem(name) is not None:
            return inner
        found = _path_to_bad_text(child, inner)
        if found is not None:
            return found
    return None


def as_text(value: bool | int | float) -> str:
    """A JSON scalar as key text: ``true``, integers of any size, numbers as Arrow
    writes them; InvalidMessageError for NaN and infinities."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMessageError(f"{value} is not JSON and cannot be a key")
    text: str = pa.array([value]).cast(pa.string())[0].as_py()
    return text


def misfit(field: str, value: Any, expected: str) -> str:
    """A dead letter's reason: ``field`` holds ``value``, which is not what it takes."""
    problem = unicode_problem(value) if isinstance(value, str) else None
    if problem is not None:
        return f"{field} {problem}"
    return f"{field} holds {shown(value)}; expected {expected}"


def shown(value: Any, width: int = 60) -> str:
    """A JSON value as a reason shows it: an array or object by its kind, a scalar as
    JSON, cut to ``width`` characters."""
    if isinstance(value, dict | list):
        return _JSON_KINDS[type(value)]
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def unicode_problem(text: str) -> str | None:
    """What makes ``text`` no valid Unicode (a lone UTF-16 surrogate escape such as
    ``\\ud800``), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (
            f"holds the lone surrogate {ascii(text[err.start])[1:-1]}, which is no Unicode "
            "character (escapes \\ud800-\\udfff must come in pairs)"
        )
    return None
