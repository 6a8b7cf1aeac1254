"""JSON batches → Arrow rows and dead letters; bad input never raises."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from sources.batches import DEAD_LETTER_SCHEMA, RawBatch
from sources.decode import JsonDecoder, TimeFormat

SCHEMA = pa.schema(
    [("ts", pa.timestamp("ms", tz="UTC")), ("service", pa.string()), ("status", pa.int64())]
)
DECODER = JsonDecoder(SCHEMA, "ts")


def _batch(values: list[bytes | None]) -> RawBatch:
    count = len(values)
    return RawBatch(
        topic="t",
        partition=3,
        offsets=list(range(100, 100 + count)),
        keys=[b"k"] * count,
        values=values,
        timestamps_ms=[1_700_000_000_000 + i for i in range(count)],
    )


def _good(i: int) -> bytes:
    event = {"ts": f"2024-05-01T00:00:{i % 60:02d}.5Z", "service": f"s{i}", "status": i}
    return json.dumps(event).encode()


def test_valid_batch_decodes_in_order_with_schema() -> None:
    decoded = DECODER.decode(_batch([_good(i) for i in range(50)]))
    assert decoded.dead_letters == []
    assert decoded.records.schema == DECODER.schema
    assert DECODER.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert decoded.max_us == max(decoded.records["ts"].cast(pa.int64()).to_pylist())
    assert decoded.records["status"].to_pylist() == list(range(50))


def test_bad_messages_become_dead_letters_with_reasons_and_offsets() -> None:
    bad = {
        3: b"not json at all",
        7: b"\xff\xfe\x00garbage",
        11: b"[1, 2, 3]",
        13: b'{"service": "no-ts"}',
        17: b'{"ts": "yesterday", "service": "x"}',
        19: b'{"ts": "2024-05-01T00:00:00Z", "status": "two hundred"}',
        23: None,
        29: b'{"ts": "2024-05-01T00:00:00Z", "service": "trunc',
    }
    values = [bad.get(i, _good(i)) for i in range(40)]
    decoded = DECODER.decode(_batch(values))

    letters = {letter["offset"] - 100: letter for letter in decoded.dead_letters}
    assert set(letters) == set(bad)
    assert "not JSON" in letters[3]["error"]
    assert "not UTF-8" in letters[7]["error"]
    assert "not a JSON object but an array" in letters[11]["error"]
    assert "'ts' is missing" in letters[13]["error"]
    assert "yesterday" in letters[17]["error"]
    assert "status" in letters[19]["error"]
    assert letters[23]["error"] == "empty message"
    assert "not JSON" in letters[29]["error"]
    assert letters[3]["value"] == bad[3] and letters[3]["partition"] == 3
    good = [i for i in range(40) if i not in bad]
    assert decoded.records["status"].to_pylist() == good


def test_pretty_printed_object_is_accepted() -> None:
    pretty = json.dumps(json.loads(_good(5)), indent=2).encode()
    decoded = DECODER.decode(_batch([_good(1), pretty, _good(2)]))
    assert decoded.dead_letters == []
    assert decoded.records["status"].to_pylist() == [1, 5, 2]


def test_extra_fields_are_ignored_and_missing_optional_fields_are_null() -> None:
    decoded = DECODER.decode(_batch([b'{"ts": "2024-05-01T00:00:00Z", "extra": {"a": 1}}']))
    assert decoded.dead_letters == []
    assert decoded.records["service"].to_pylist() == [None]


def test_dead_letter_table_has_fixed_schema() -> None:
    decoded = DECODER.decode(_batch([b"x", _good(1)]))
    table = decoded.dead_letter_table()
    assert table.schema == DEAD_LETTER_SCHEMA
    assert table.num_rows == 1
    assert table["key"].to_pylist() == [b"k"]


def test_empty_batch() -> None:
    decoded = DECODER.decode(_batch([]))
    assert decoded.records.num_rows == 0 and decoded.dead_letters == []


@pytest.mark.parametrize(
    ("time_format", "value"),
    [
        ("epoch_s", b"1714521600.25"),
        ("epoch_ms", b"1714521600250"),
        ("iso", b'"2024-05-01T02:00:00.25+02:00"'),
    ],
)
def test_time_formats_normalize_to_utc_micros(time_format: TimeFormat, value: bytes) -> None:
    decoder = JsonDecoder(SCHEMA, "ts", time_format)
    decoded = decoder.decode(_batch([b'{"ts": ' + value + b', "service": "a"}']))
    assert decoded.dead_letters == []
    assert decoded.records["ts"].cast(pa.int64()).to_pylist() == [1_714_521_600_250_000]


def test_unparseable_time_is_a_dead_letter_naming_the_field() -> None:
    decoder = JsonDecoder(SCHEMA, "ts", "epoch_ms")
    decoded = decoder.decode(_batch([b'{"ts": "soon", "service": "a"}', b'{"service": "b"}']))
    assert [letter["offset"] for letter in decoded.dead_letters] == [100, 101]
    assert "'ts' is missing" in decoded.dead_letters[1]["error"]
