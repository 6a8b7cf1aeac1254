"""Whatever a message holds, both decoders make it rows or dead letters, never a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import monitoring
from sources.batches import DecodedBatch, RawBatch
from sources.decode import JsonDecoder
from sources.event_time import DEFAULT_MAX_FUTURE_S, EARLIEST_US, LATEST_US, TimeGuard
from sources.flexible_decode import INVALID_VALUES, FlexibleJsonDecoder
from tests.hostile_corpus import HOSTILE, Outcome, event

MINUTE_US = 60_000_000
GUARD = TimeGuard(DEFAULT_MAX_FUTURE_S, reach_us=MINUTE_US)
DECODERS: dict[str, JsonDecoder] = {
    "aggregate": FlexibleJsonDecoder("ts", ("service",), ("latency_ms",)).guarded(GUARD),
    "aggregate --strict": FlexibleJsonDecoder(
        "ts", ("service",), ("latency_ms",), strict=True
    ).guarded(GUARD),
    "monitoring": monitoring.DECODER.guarded(GUARD),
}


def _batch(values: list[bytes | None]) -> RawBatch:
    count = len(values)
    return RawBatch("t", 0, list(range(count)), [b"key"] * count, values, [0] * count)


def _expected(decoder_name: str, case: str, outcome: Outcome) -> Outcome:
    """The fixed-schema flows and --strict dead-letter every value that is not a finite
    number; otherwise the outcome of the corpus."""
    if decoder_name != "aggregate" and case.startswith("value "):
        return "dead"
    return outcome


def _assert_clean(decoded: DecodedBatch, messages: int) -> None:
    """Rows + dead letters = messages; every string valid UTF-8; no NaN or infinity;
    every time windowable."""
    assert decoded.records.num_rows + len(decoded.dead_letters) == messages
    decoded.records.validate(full=True)  # raises on a string that is not UTF-8
    decoded.dead_letter_table().validate(full=True)
    for field in decoded.records.schema:
        column = decoded.records[field.name]
        if pa.types.is_floating(field.type):
            assert pc.all(pc.is_finite(column)).as_py() is not False, field.name
        if pa.types.is_timestamp(field.type) and len(column):
            micros = column.cast(pa.int64()).to_numpy()
            assert micros.min() > EARLIEST_US and micros.max() < LATEST_US


@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_hostile_case_is_a_row_or_a_dead_letter_among_valid_events(
    decoder_name: str, case: str
) -> None:
    value, outcome = HOSTILE[case]
    decoded = DECODERS[decoder_name].decode(_batch([event(), value, event()]))

    _assert_clean(decoded, 3)
    dead = [letter["offset"] for letter in decoded.dead_letters]
    assert dead == ([1] if _expected(decoder_name, case, outcome) == "dead" else [])
    assert all(letter["error"] for letter in decoded.dead_letters)


def test_an_open_object_cannot_run_on_into_the_next_message() -> None:
    """One message left open and one with two objects: a merge and a split would cancel
    out in the row count; each must be judged alone."""
    opened = event()[:-1] + b',"x":'
    values = [opened, b'{"y":1}}', event() + b" " + event()]
    for decoder in DECODERS.values():
        decoded = decoder.decode(_batch(values))
        assert [letter["offset"] for letter in decoded.dead_letters] == [0, 1, 2]


def test_lenient_values_that_are_not_finite_numbers_are_counted_invalid() -> None:
    cases = [name for name in HOSTILE if name.startswith("value ")]
    decoded = DECODERS["aggregate"].decode(_batch([HOSTILE[name][0] for name in cases]))

    assert decoded.records["latency_ms"].null_count == len(cases)
    assert decoded.records[INVALID_VALUES].to_pylist() == [1] * len(cases)


def test_keys_of_any_integer_size_and_booleans_become_text() -> None:
    values = [HOSTILE[name][0] for name in ("key 2**70", "key 2**64 negative", "key true")]
    for name in ("aggregate", "monitoring"):
        records = DECODERS[name].decode(_batch(values)).records
        assert records["service"].to_pylist() == [str(2**70), str(-(2**64)), "true"]


def test_reasons_name_the_problem() -> None:
    reasons = {
        case: DECODERS["aggregate"].decode(_batch([HOSTILE[case][0]])).dead_letters[0]["error"]
        for case in ("tombstone", "top-level null", "time ten years ahead", "time year 9999")
    }
    assert reasons["tombstone"] == "empty message"
    assert "not a JSON object" in str(reasons["top-level null"])
    assert "10 years ahead of now (more than --max-future" in str(reasons["time ten years ahead"])
    assert "after the year 9999" in str(reasons["time year 9999"])


@pytest.mark.parametrize(
    ("decoder_name", "value", "reason"),
    [
        ("monitoring", event(ts="1714564800"),
         "time field 'ts' holds 1714564800; expected ISO-8601 text such as 2024-05-01T12:00:00Z"),
        ("monitoring", event(ts='"tomorrow"'), "time field 'ts' holds \"tomorrow\"; expected ISO"),
        ("monitoring", event(status='"abc"'), "'status' holds \"abc\"; expected a whole number"),
        ("monitoring", event(status="200.5"), "'status' holds 200.5; expected a whole number"),
        ("monitoring", event(latency_ms="[1]"), "'latency_ms' holds an array; expected a number"),
        ("monitoring", event(service='{"a": 1}'), "field 'service' holds an object; expected text"),
        ("monitoring", HOSTILE["key lone high surrogate escape"][0],
         "field 'service' holds the lone surrogate \\ud800, which is no Unicode character"),
        ("aggregate", HOSTILE["key lone low surrogate escape"][0],
         "field 'service' holds the lone surrogate \\udc00"),
        ("aggregate", HOSTILE["key nested with a lone surrogate"][0],
         "field 'service' holds the lone surrogate \\udfff"),
        ("monitoring", HOSTILE["key not UTF-8"][0], "field 'service' is not UTF-8"),
        ("aggregate", HOSTILE["unread field not UTF-8"][0], "field 'extra' is not UTF-8"),
        ("aggregate", HOSTILE["field name not UTF-8"][0], "field 'n\\udcff' is not UTF-8"),
    ],
)  # fmt: skip
def test_a_dead_letter_names_the_field_and_what_it_takes(
    decoder_name: str, value: bytes, reason: str
) -> None:
    decoded = DECODERS[decoder_name].decode(_batch([event(), value]))
    assert [letter["offset"] for letter in decoded.dead_letters] == [1]
    assert reason in str(decoded.dead_letters[0]["error"])


def test_a_tombstone_keeps_its_key_in_the_dead_letter() -> None:
    letter = DECODERS["monitoring"].decode(_batch([None])).dead_letters[0]
    assert (letter["key"], letter["value"], letter["error"]) == (b"key", None, "empty message")


def test_an_unexpected_exception_becomes_a_dead_letter_naming_its_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> str:
        raise LookupError(f"cannot handle {args!r}")

    monkeypatch.setattr("sources.flexible_decode._text", broken)
    decoded = DECODERS["aggregate"].decode(_batch([event(service="42")]))

    assert decoded.records.num_rows == 0
    assert decoded.dead_letters[0]["error"].startswith("unexpected LookupError")


def test_max_future_none_accepts_far_future_times_and_the_clock_is_passed_in() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    far = np.array([(later - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)])
    TimeGuard(None).check(far)
    TimeGuard(DEFAULT_MAX_FUTURE_S, clock=lambda: later - timedelta(hours=1)).check(far)
    with pytest.raises(ValueError, match="3 days ahead of now"):
        TimeGuard(DEFAULT_MAX_FUTURE_S, clock=lambda: later - timedelta(days=3)).check(far)


_NUMBERS = ["1e999", "-1e999", "NaN", "Infinity", "1.5e300", "1" + "0" * 30, "-0", "null"]


@st.composite
def _mutated_event(draw: st.DrawFn) -> bytes:
    """A valid event, then flipped, truncated, spliced, given odd numbers or nested."""
    value = bytearray(event(**{"latency_ms": draw(st.sampled_from(_NUMBERS))}))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, max(len(value) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "splice", "nest", "number"]))
        if action == "flip" and value:
            value[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del value[position:]
        elif action == "splice":
            value[position:position] = draw(st.sampled_from([b"\n", b"null", b"{", b"}", b"\r"]))
        elif action == "nest":
            depth = draw(st.integers(1, 5000))
            value[position:position] = b"[" * depth + b"]" * depth
        else:
            value[position:position] = draw(st.sampled_from(_NUMBERS)).encode()
    return bytes(value)


_MESSAGES = st.lists(
    st.one_of(st.binary(max_size=64), _mutated_event(), st.none(), st.just(event())),
    min_size=1,
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(values=_MESSAGES)
def test_random_and_mutated_messages_never_raise(values: list[bytes | None]) -> None:
    for decoder in DECODERS.values():
        _assert_clean(decoder.decode(_batch(values)), len(values))
