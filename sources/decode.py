"""Decode batches of JSON messages into Arrow record batches and dead letters.

The fast path hands the whole batch to Arrow's C++ JSON reader with the flow's
fixed schema. When that fails, the batch is bisected so only the halves that
fail are parsed again: k bad messages in n cost O(k log n) parses, and every
good message still arrives through the same reader (same types, same rules).
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from sources.batches import DecodedBatch, RawBatch

_MIN_BLOCK = 1 << 20
UTC_MICROS = pa.timestamp("us", tz="UTC")

TimeFormat = Literal["iso", "epoch_s", "epoch_ms"]
_PARSED_AS: dict[str, pa.DataType] = {
    "iso": UTC_MICROS,
    "epoch_s": pa.float64(),
    "epoch_ms": pa.float64(),
}
_MICROS_PER_UNIT = {"epoch_s": 1_000_000, "epoch_ms": 1_000}


class JsonDecoder:
    """Parses JSON objects into rows of ``schema``; extra fields are ignored.

    ``time_field`` holds the event time: ISO-8601 text with or without a UTC
    offset (``iso``), or a number of seconds or milliseconds since the epoch.
    In :attr:`schema` it is always ``timestamp[us, UTC]``. It and the
    ``required`` fields must be present and non-null, or the message becomes a
    dead letter saying which field is missing.
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
        parse_schema = schema.set(index, pa.field(time_field, _PARSED_AS[time_format]))
        self._options = pa_json.ParseOptions(
            explicit_schema=parse_schema, unexpected_field_behavior="ignore"
        )

    def decode(self, raw: RawBatch) -> DecodedBatch:
        """Split ``raw`` into valid rows and dead letters; never raises on bad input."""
        decoded = DecodedBatch(self.schema.empty_table())
        tables: list[pa.Table] = []
        self._decode_range(raw, 0, len(raw), tables, decoded.dead_letters)
        if tables:
            decoded.records = pa.concat_tables(tables)
            if decoded.records.num_rows:
                decoded.max_us = pc.max(decoded.records[self.time_field]).value
        return decoded

    def _decode_range(
        self,
        raw: RawBatch,
        start: int,
        stop: int,
        tables: list[pa.Table],
        dead: list[dict[str, object]],
    ) -> None:
        values = raw.values[start:stop]
        if not values:
            return
        try:
            table = self._parse(
                b"\n".join(value or b"" for value in values), expected_rows=len(values)
            )
        except (pa.ArrowInvalid, ValueError):
            if len(values) == 1:
                self._decode_single(raw, start, tables, dead)
                return
            middle = (start + stop) // 2
            self._decode_range(raw, start, middle, tables, dead)
            self._decode_range(raw, middle, stop, tables, dead)
            return
        tables.append(table)

    def _parse(self, ndjson: bytes, expected_rows: int) -> pa.Table:
        # One block for the whole batch: a line may not straddle two blocks.
        read_options = pa_json.ReadOptions(block_size=max(_MIN_BLOCK, len(ndjson) + 1))
        table = pa_json.read_json(
            io.BytesIO(ndjson), read_options=read_options, parse_options=self._options
        )
        if table.num_rows != expected_rows:
            raise ValueError("a message spans several lines")
        for name in self.required:
            if table.column(name).null_count:
                raise ValueError(f"required field {name!r} is missing or null")
        return self._normalize_time(table)

    def _normalize_time(self, table: pa.Table) -> pa.Table:
        if self.time_format == "iso":
            return table
        index = table.schema.get_field_index(self.time_field)
        scaled = pc.multiply(table[self.time_field], _MICROS_PER_UNIT[self.time_format])
        micros = pc.round(scaled).cast(pa.int64()).cast(UTC_MICROS)
        return table.set_column(index, self.time_field, micros)

    def _decode_single(
        self, raw: RawBatch, index: int, tables: list[pa.Table], dead: list[dict[str, object]]
    ) -> None:
        """One message that failed on its own: a row if :meth:`_single_row` can make
        one, else a dead letter saying why."""
        try:
            tables.append(self._single_row(parse_object(raw.values[index])))
        except (pa.ArrowInvalid, ValueError) as err:  # InvalidMessageError included
            dead.append(self.dead_letter(raw, index, str(err)))

    def _single_row(self, event: dict[str, Any]) -> pa.Table:
        """``event`` as one row; here pretty-printed JSON gets a second chance."""
        return self._parse(json.dumps(event).encode(), expected_rows=1)

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
            "error": reason,
        }


class InvalidMessageError(ValueError):
    """Why one message cannot become a row; the text goes to the dead-letter table."""


def parse_object(value: bytes | None) -> dict[str, Any]:
    """``value`` parsed as a JSON object, or InvalidMessageError saying why it is not one."""
    if not value:
        raise InvalidMessageError("empty message")
    try:
        parsed = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidMessageError(f"not UTF-8: {err}") from None
    except json.JSONDecodeError as err:
        raise InvalidMessageError(f"not JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise InvalidMessageError(f"not a JSON object but a {type(parsed).__name__}")
    return parsed
