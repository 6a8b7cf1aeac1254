"""``--filter`` expressions: comparisons of a field with a literal, joined by and/or.

Grammar: ``FIELD OP LITERAL [(and|or) FIELD OP LITERAL]...`` with ``OP`` one
of ``== != < <= > >=``, ``LITERAL`` a number or a quoted string, and ``and``
binding tighter than ``or`` (no parentheses). A comparison with a missing or
null field is false, as in SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow.compute as pc

from common.errors import ConfigError

_TOKEN = re.compile(
    r"""\s*(?:(?P<op>==|!=|<=|>=|<|>)|(?P<number>-?\d+(?:\.\d+)?)|"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'"""
    r"""|(?P<word>[A-Za-z_][\w.]*))"""
)
_COMPARE = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


@dataclass(frozen=True)
class Filter:
    """A parsed filter: the Arrow expression and the fields it reads, by type."""

    expression: pc.Expression
    number_fields: tuple[str, ...]
    text_fields: tuple[str, ...]


def parse_filter(text: str) -> Filter:
    """Parse ``text``; ConfigError showing the grammar if it does not fit."""
    tokens = _tokenize(text)
    numbers: list[str] = []
    texts: list[str] = []
    alternatives: list[pc.Expression] = []
    conjunction: list[pc.Expression] = []
    position = 0
    while True:
        if len(tokens) < position + 3:
            raise _invalid(text, "expected FIELD OP LITERAL")
        (field_kind, field), (op_kind, op), (literal_kind, literal) = tokens[
            position : position + 3
        ]
        if field_kind != "word" or op_kind != "op" or literal_kind not in ("number", "text"):
            raise _invalid(text, f"expected FIELD OP LITERAL, not {field} {op} {literal}")
        value: float | str = float(literal) if literal_kind == "number" else literal
        (numbers if literal_kind == "number" else texts).append(field)
        conjunction.append(_COMPARE[op](pc.field(field), value))
        position += 3
        if position == len(tokens):
            break
        joiner = tokens[position][1].lower()
        if joiner not in ("and", "or"):
            raise _invalid(text, f"expected 'and' or 'or', not {tokens[position][1]!r}")
        if joiner == "or":
            alternatives.append(_all(conjunction))
            conjunction = []
        position += 1
    alternatives.append(_all(conjunction))
    both = sorted(set(numbers) & set(texts))
    if both:
        raise _invalid(text, f"{both[0]!r} is compared with both a number and a string")
    expression = alternatives[0]
    for alternative in alternatives[1:]:
        expression = pc.or_kleene(expression, alternative)
    return Filter(expression, tuple(dict.fromkeys(numbers)), tuple(dict.fromkeys(texts)))


def _all(comparisons: list[pc.Expression]) -> pc.Expression:
    combined = comparisons[0]
    for comparison in comparisons[1:]:
        combined = pc.and_kleene(combined, comparison)
    return combined


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise _invalid(text, f"cannot read {text[position:].strip()[:20]!r}")
        kind = match.lastgroup or ""
        if kind in ("dq", "sq"):
            tokens.append(("text", match.group(kind)))
        else:
            tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _invalid(text: str, why: str) -> ConfigError:
    return ConfigError(
        f"--filter {text!r}: {why}; write e.g. 'status >= 500' or "
        "\"service == 'api' and latency_ms > 250\""
    )
