"""Decode JSON topics whose shape eventlake did not choose: lenient, nested, any time format.

Fields are addressed by dotted paths (``request.service``) and become flat
columns named by the path. Each field has a role:

- the time field, in :data:`TIME_FORMATS` (``auto`` takes ISO-8601 text with
  ``Z``, a numeric offset or none (UTC), with or without fractions, and epoch
  seconds or milliseconds as numbers or numeric strings: numbers of 10^11 and
  above are milliseconds);
- text fields (keys, ``distinct``/``topk`` fields): kept as strings, numbers
  and booleans written as text; missing or null stays null;
- number fields (``--value``): floats; null or missing stays null; a numeric
  string is read as its number; anything else is invalid: counted per row in
  ``invalid_values``, or with ``strict`` a dead letter naming the field.

Clean batches go through Arrow's JSON reader in one piece (the time field's
type is sniffed from the batch's first message, so epoch-time topics stay on
the fast path); a batch Arrow rejects is bisected and only the messages that
fail on their own are decoded in Python, by the same rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from common.errors import InvalidMessageError
from common.units import UTC_MICROS
from sources.decode import JsonDecoder, read_ndjson, require_finite
from sources.event_time import TimeGuard, epoch_micros, micros_of
from sources.json_values import as_text, shown, unicode_problem

TIME_FORMATS = ("auto", "iso", "epoch_s", "epoch_ms")
FlexibleTimeFormat = Literal["auto", "iso", "epoch_s", "epoch_ms"]
INVALID_VALUES = "invalid_values"
EPOCH_MS_FROM = 1e11
"""Epoch numbers from here on are milliseconds (1e11 s would be the year 5138)."""


class FlexibleJsonDecoder(JsonDecoder):
    """Rows of ``time_field``, ``text_fields`` and ``number_fields`` (plus
    ``invalid_values``) from any JSON object; never raises on bad input.

    It reuses :class:`JsonDecoder`'s batching and bisection (``decode``) and
    replaces how a batch and a single message are parsed, so it sets up its own
    state instead of calling the base initializer.
    """

    def __init__(
        self,
        time_field: str,
        text_fields: Sequence[str] = (),
        number_fields: Sequence[str] = (),
        time_format: FlexibleTimeFormat = "auto",
        strict: bool = False,
    ) -> None:
        self.schema = pa.schema(
            [(time_field, UTC_MICROS)]
            + [(name, pa.string()) for name in text_fields]
            + [(name, pa.float64()) for name in number_fields]
            + [(INVALID_VALUES, pa.int64())]
        )
        self.time_field = time_field
        self.text_fields = tuple(text_fields)
        self.number_fields = tuple(number_fields)
        self.flexible_format = time_format
        self.strict = strict
        self.guard = TimeGuard()
        self._iso_options = self._parse_options(UTC_MICROS)
        self._epoch_options = self._parse_options(pa.float64())

    def _parse_options(self, time_type: pa.DataType) -> pa_json.ParseOptions:
        leaves = {self.time_field: time_type}
        leaves |= {name: pa.string() for name in self.text_fields}
        leaves |= {name: pa.float64() for name in self.number_fields}
        return pa_json.ParseOptions(
            explicit_schema=_nested_schema(leaves), unexpected_field_behavior="ignore"
        )

    def _parse(self, ndjson: bytes, expected_rows: int) -> pa.Table:
        epoch = self._sniff_epoch(ndjson[: ndjson.find(b"\n") if b"\n" in ndjson else None])
        nested = read_ndjson(ndjson, self._epoch_options if epoch else self._iso_options)
        if nested.num_rows != expected_rows:
            raise InvalidMessageError("a message holds several JSON values")
        columns = {name: _leaf(nested, name) for name in self.schema.names[:-1]}
        if columns[self.time_field].null_count:
            raise InvalidMessageError("a time field is missing")
        if epoch:
            columns[self.time_field] = _epoch_micros(columns[self.time_field], self.flexible_format)
        self.guard.check_column(columns[self.time_field])
        invalid = np.zeros(expected_rows, dtype=np.int64)
        for name in self.number_fields:
            columns[name] = self._finite_only(name, columns[name], invalid)
        columns[INVALID_VALUES] = pa.array(invalid)
        return pa.table(columns, schema=self.schema)

    def _finite_only(self, name: str, numbers: pa.Array, invalid: np.ndarray) -> pa.Array:
        """``numbers`` with NaN and infinities made null and counted in ``invalid``
        (with ``strict``: InvalidMessageError)."""
        not_finite = pc.invert(pc.is_finite(numbers)).fill_null(False)
        if not pc.any(not_finite).as_py():
            return numbers
        if self.strict:
            require_finite(name, numbers)
        invalid += np.asarray(not_finite.to_numpy(zero_copy_only=False), dtype=np.int64)
        return pc.if_else(not_finite, pa.scalar(None, pa.float64()), numbers)

    def _sniff_epoch(self, first: bytes) -> bool:
        """Whether this batch's times are numbers (per the first message)."""
        if self.flexible_format in ("epoch_s", "epoch_ms"):
            return True
        if self.flexible_format == "iso":
            return False
        try:
            value = _lookup(json.loads(first), self.time_field)
        except (ValueError, TypeError, RecursionError):
            return False
        return isinstance(value, int | float) and not isinstance(value, bool)

    def _single_row(self, event: dict[str, Any]) -> pa.Table:
        """``event`` decoded in Python by the same rules; InvalidMessageError says why not."""
        row = pa.Table.from_pylist([self._row(event)], schema=self.schema)
        self.guard.check_column(row[self.time_field])
        return row

    def _row(self, event: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {self.time_field: self._event_time(_lookup(event, self.time_field))}
        for name in self.text_fields:
            row[name] = _text(name, _lookup(event, name))
        invalid = 0
        for name in self.number_fields:
            row[name], ok = _number(_lookup(event, name))
            if not ok and self.strict:
                raise InvalidMessageError(
                    f"field {name!r} is not a number: {shown(_lookup(event, name))} (--strict)"
                )
            invalid += not ok
        row[INVALID_VALUES] = invalid
        return row

    def _event_time(self, value: Any) -> int:
        """The event time (µs) of a message's time value, or InvalidMessageError saying
        why not."""
        name, form = self.time_field, self.flexible_format
        if value is None:
            raise InvalidMessageError(f"time field {name!r} is missing or null")
        number, is_number = _number(value)
        if is_number and number is not None and form != "iso":
            scale = (
                1e3 if form == "epoch_ms" or (form == "auto" and number >= EPOCH_MS_FROM) else 1e6
            )
            micros = epoch_micros(pa.array([number]), scale)
            return int(micros.cast(pa.int64())[0].as_py())
        if isinstance(value, str) and form in ("auto", "iso"):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
                return micros_of(aware)
        expected = {
            "auto": "ISO-8601 text or epoch seconds/milliseconds",
            "iso": "ISO-8601 text (--time-format iso)",
            "epoch_s": "epoch seconds (--time-format epoch_s)",
            "epoch_ms": "epoch milliseconds (--time-format epoch_ms)",
        }[form]
        raise InvalidMessageError(f"time field {name!r}: cannot read {shown(value)} as {expected}")


def _nested_schema(leaves: dict[str, pa.DataType]) -> pa.Schema:
    """A schema with a struct per dotted path prefix, so Arrow reads nested fields."""
    tree: dict[str, Any] = {}
    for path, data_type in leaves.items():
        node = tree
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = data_type

    def build(node: dict[str, Any]) -> list[pa.Field]:
        return [
            pa.field(name, pa.struct(build(child)) if isinstance(child, dict) else child)
            for name, child in node.items()
        ]

    return pa.schema(build(tree))


def _leaf(table: pa.Table, path: str) -> pa.Array:
    """The flat column of a dotted path; null wherever a parent is null."""
    first, *rest = path.split(".")
    column = table[first].combine_chunks()
    for part in rest:
        column = pc.struct_field(column, part)
    return column


def _epoch_micros(numbers: pa.Array, form: str) -> pa.Array:
    """Epoch numbers as UTC timestamps; ``auto`` takes 10^11 and above as milliseconds."""
    if form == "epoch_ms":
        scale: Any = 1_000
    elif form == "epoch_s":
        scale = 1_000_000
    else:
        scale = pc.if_else(pc.greater_equal(numbers, EPOCH_MS_FROM), 1_000, 1_000_000)
    return epoch_micros(numbers, scale)


def _lookup(event: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(event, dict):
            return None
        event = event.get(part)
    return event


def _text(name: str, value: Any) -> str | None:
    """Text field ``name``'s value as text (null stays null); InvalidMessageError if it
    is no valid Unicode."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return as_text(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                            ensure_ascii=False)  # fmt: skip
    problem = unicode_problem(text)
    if problem is not None:
        raise InvalidMessageError(f"field {name!r} {problem}")
    return text


def _number(value: Any) -> tuple[float | None, bool]:
    """(the number, True) for a finite number or numeric string; (None, True) for null;
    (None, False) for anything else (NaN and infinities included)."""
    if value is None:
        return None, True
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, False
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not numeric text; an integer beyond floats
        return None, False
    return (number, True) if math.isfinite(number) else (None, False)
