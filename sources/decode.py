"""Decode batches of JSON messages into Arrow record batches and dead letters.

Every message is judged on its own and none can stop a flow (the rules are in
the README, "Bad input, dead letters and gaps"). The fast path hands runs of
clean messages to Arrow's C++ JSON reader with the flow's fixed schema; messages
the reader must never see (see :meth:`NdjsonLines.join`: a first line ``null``
crashes pyarrow's reader) are judged one by one in Python. A run that Arrow
rejects is bisected so only the halves that fail are parsed again: k bad
messages in n cost O(k log n) parses.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from common.errors import InvalidMessageError
from common.units import UTC_MICROS
from sources.batches import DecodedBatch, RawBatch
from sources.event_time import TimeGuard, epoch_micros
from sources.json_values import as_text, misfit, parse_object

TimeFormat = Literal["iso", "epoch_s", "epoch_ms"]
_PARSED_AS: dict[str, pa.DataType] = {
    "iso": UTC_MICROS,
    "epoch_s": pa.float64(),
    "epoch_ms": pa.float64(),
}
_MICROS_PER_UNIT = {"epoch_s": 1_000_000, "epoch_ms": 1_000}
_OPEN_BRACE, _CLOSE_BRACE = ord("{"), ord("}")
_EXPECTED = {
    "iso": "ISO-8601 text such as 2024-05-01T12:00:00Z (with an offset, or none for UTC)",
    "epoch_s": "epoch seconds (a number)",
    "epoch_ms": "epoch milliseconds (a number)",
}
"""The forms a time field takes, in words, per time format."""


class JsonDecoder:
    """Parses JSON objects into rows of ``schema``; extra fields are ignored.

    ``time_field`` holds the event time: ISO-8601 text with or without a UTC
    offset (``iso``), or a number of seconds or milliseconds since the epoch.
    In :attr:`schema` it is always ``timestamp[us, UTC]``. It and the
    ``required`` fields must be present and non-null, or the message becomes a
    dead letter saying which field is missing. Numbers must be finite, and
    times accepted by the decoder's :class:`TimeGuard` (see :meth:`guarded`).
    """

    def __init__(
        self,
        schema: pa.Schema,
        time_field: str,
        time_format: TimeFormat = "iso",
        required: tuple[str, ...] = (),
    ) -> None:
        index = schema.get_field_index(time_field)
        self.schema = schema.set(index, pa.field(time_field, UTC_MICROS))
        self.time_field = time_field
        self.time_format = time_format
        self.required = (time_field, *required)
        self.guard = TimeGuard()
        parse_schema = schema.set(index, pa.field(time_field, _PARSED_AS[time_format]))
        self._options = pa_json.ParseOptions(
            explicit_schema=parse_schema, unexpected_field_behavior="ignore"
        )

    def guarded(self, guard: TimeGuard) -> JsonDecoder:
        """A copy of this decoder that dead-letters the times ``guard`` rejects."""
        decoder = copy.copy(self)
        decoder.guard = guard
        return decoder

    def decode(self, raw: RawBatch) -> DecodedBatch:
        """Split ``raw`` into valid rows (in offset order) and dead letters; never raises
        on bad input: rows + dead letters = messages."""
        decoded = DecodedBatch(self.schema.empty_table())
        tables: list[pa.Table] = []
        lines = NdjsonLines.join(raw.values)
        start = 0
        for index in np.flatnonzero(lines.suspect):
            self._decode_range(raw, lines, start, int(index), tables, decoded.dead_letters)
            self._decode_single(raw, int(index), tables, decoded.dead_letters)
            start = int(index) + 1
        self._decode_range(raw, lines, start, len(raw), tables, decoded.dead_letters)
        if tables:
            decoded.records = pa.concat_tables(tables)
            if decoded.records.num_rows:
                decoded.max_us = pc.max(decoded.records[self.time_field]).value
        return decoded

    def _decode_range(
        self,
        raw: RawBatch,
        lines: NdjsonLines,
        start: int,
        stop: int,
        tables: list[pa.Table],
        dead: list[dict[str, object]],
    ) -> None:
        if start >= stop:
            return
        try:
            table = self._parse(lines.span(start, stop), expected_rows=stop - start)
        except Exception:  # any failure of a run: judge its halves, down to single messages
            if stop - start == 1:
                self._decode_single(raw, start, tables, dead)
                return
            middle = (start + stop) // 2
            self._decode_range(raw, lines, start, middle, tables, dead)
            self._decode_range(raw, lines, middle, stop, tables, dead)
            return
        tables.append(table)

    def _parse(self, ndjson: bytes, expected_rows: int) -> pa.Table:
        table = read_ndjson(ndjson, self._options)
        if table.num_rows != expected_rows:
            raise InvalidMessageError("a message holds several JSON values")
        for name in self.required:
            if table.column(name).null_count:
                raise InvalidMessageError(f"required field {name!r} is missing or null")
        return self._checked(self._normalize_time(table))

    def _checked(self, table: pa.Table) -> pa.Table:
        """``table`` if its numbers are finite and its times accepted; else
        InvalidMessageError naming the first offending value."""
        for field in table.schema:
            if pa.types.is_floating(field.type):
                require_finite(field.name, table[field.name])
        self.guard.check_column(table[self.time_field])
        return table

    def _normalize_time(self, table: pa.Table) -> pa.Table:
        if self.time_format == "iso":
            return table
        index = table.schema.get_field_index(self.time_field)
        micros = epoch_micros(
            table[self.time_field].combine_chunks(), _MICROS_PER_UNIT[self.time_format]
        )
        return table.set_column(index, self.time_field, micros)

    def _decode_single(
        self, raw: RawBatch, index: int, tables: list[pa.Table], dead: list[dict[str, object]]
    ) -> None:
        """One message on its own: a row if :meth:`_single_row` can make one, else a
        dead letter saying why (naming the exception class if it was unexpected)."""
        try:
            tables.append(self._single_row(parse_object(raw.values[index])))
        except (pa.ArrowInvalid, ValueError) as err:  # InvalidMessageError included
            dead.append(self.dead_letter(raw, index, str(err)))
        except Exception as err:  # one message must never stop a flow
            reason = f"unexpected {type(err).__name__} while decoding: {err}"
            dead.append(self.dead_letter(raw, index, reason))

    def _single_row(self, event: dict[str, Any]) -> pa.Table:
        """``event`` as one row; here pretty-printed JSON gets a second chance, and
        numbers and booleans in text fields become text. InvalidMessageError names the
        first field Arrow refuses, and the forms it accepts."""
        known = {
            field.name: _coerced(field, event[field.name])
            for field in self.schema
            if field.name in event
        }
        try:
            return self._parse(json.dumps(known).encode(), expected_rows=1)
        except pa.ArrowInvalid as err:
            raise InvalidMessageError(self._misfit(known) or str(err)) from None

    def _misfit(self, known: dict[str, Any]) -> str | None:
        """Why the first field of ``known`` that Arrow refuses on its own is refused;
        None if each one alone is fine."""
        parsed = self._options.explicit_schema
        for name, value in known.items():
            alone = pa_json.ParseOptions(explicit_schema=pa.schema([parsed.field(name)]))
            try:
                read_ndjson(json.dumps({name: value}).encode(), alone)
            except pa.ArrowInvalid:
                if name == self.time_field:
                    return misfit(f"time field {name!r}", value, _EXPECTED[self.time_format])
                return misfit(f"field {name!r}", value, _expected(parsed.field(name)))
        return None

    @staticmethod
    def dead_letter(raw: RawBatch, index: int, reason: str) -> dict[str, object]:
        """The dead-letter row of message ``index`` of ``raw``, failed for ``reason``."""
        return {
            "topic": raw.topic,
            "partition": raw.partition,
            "offset": raw.offsets[index],
            "kafka_timestamp": raw.timestamps_ms[index],
            "key": raw.keys[index],
            "value": raw.values[index],
            "error": reason.encode("utf-8", "backslashreplace").decode(),  # always writable
        }


@dataclass(frozen=True)
class NdjsonLines:
    """A batch's messages joined by newlines, where each starts and ends, and which
    are ``suspect``: never to be handed to Arrow's reader."""

    joined: bytes
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    suspect: npt.NDArray[np.bool_]

    @classmethod
    def join(cls, values: list[bytes | None]) -> NdjsonLines:
        """Join ``values``; suspect are empty values and tombstones, values not starting
        with ``{`` (pyarrow's reader crashes on a first line ``null``) or not ending with
        ``}`` (an open object would run on into the next line), values holding a
        line break (they would count as several rows, or none) and values that are not
        UTF-8 (Arrow keeps such bytes in its strings, where readers fail). A clean
        batch costs no Python per message and no temporary the size of the batch."""
        try:
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))  # type: ignore[arg-type]
            blobs: list[bytes] = values  # type: ignore[assignment]  # no None in it
        except TypeError:  # a tombstone (None) among them: an empty message
            blobs = [value or b"" for value in values]
            lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
        joined = b"\n".join(blobs)
        ends = np.cumsum(lengths + 1) - 1
        starts = ends - lengths
        suspect = lengths == 0
        buffer = np.frombuffer(joined, dtype=np.uint8)
        whole = ~suspect
        suspect[whole] = (buffer[starts[whole]] != _OPEN_BRACE) | (
            buffer[ends[whole] - 1] != _CLOSE_BRACE
        )
        if joined.count(b"\n") != max(len(blobs) - 1, 0) or b"\r" in joined:
            suspect |= np.array([b"\n" in blob or b"\r" in blob for blob in blobs], dtype=np.bool_)
        if not _is_utf8(joined):  # Arrow would take bytes that are not UTF-8 into its rows
            suspect |= np.array([not _is_utf8(blob) for blob in blobs], dtype=np.bool_)
        return cls(joined, starts, ends, suspect)

    def span(self, start: int, stop: int) -> bytes:
        """Messages ``start`` to ``stop - 1`` as NDJSON."""
        return self.joined[self.starts[start] : self.ends[stop - 1]]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_ndjson(ndjson: bytes, options: pa_json.ParseOptions) -> pa.Table:
    """``ndjson`` read by Arrow in one block (a line may not straddle two blocks)."""
    read_options = pa_json.ReadOptions(block_size=max(1 << 20, len(ndjson) + 1))
    return pa_json.read_json(io.BytesIO(ndjson), read_options=read_options, parse_options=options)


def require_finite(name: str, numbers: pa.ChunkedArray | pa.Array) -> None:
    """InvalidMessageError if ``numbers`` holds NaN or an infinity (nulls are fine)."""
    finite = pc.is_finite(numbers)
    if not pc.sum(pc.invert(finite)).as_py():
        return
    first = pc.index(finite, False).as_py()
    raise InvalidMessageError(
        f"field {name!r} holds {numbers[first].as_py()}, which is not a finite number "
        "(JSON has no NaN or Infinity)"
    )


def _expected(field: pa.Field) -> str:
    """The JSON forms a field of this type takes, in words."""
    if pa.types.is_integer(field.type):
        return "a whole number"
    if pa.types.is_floating(field.type):
        return "a number"
    if pa.types.is_timestamp(field.type):
        return _EXPECTED["iso"]
    return "text (a number or boolean becomes text)"


def _coerced(field: pa.Field, value: Any) -> Any:
    if pa.types.is_string(field.type) and isinstance(value, bool | int | float):
        return as_text(value)
    return value
