"""Hostile message values: every case that once crashed a flow or lost data, and more.

``HOSTILE`` maps a case name to (value, outcome), where the outcome is what the
lenient ``aggregate`` decoder makes of it (``row`` or ``dead``) with the fields
``ts`` (time), ``service`` (key) and ``latency_ms`` (value). Shared by the
decoder tests and the end-to-end test that produces them into a running flow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Outcome = Literal["row", "dead"]
VALID_TIME = "2024-05-01T12:00:00Z"
DEEP = 100_000


def event(**fields: Any) -> bytes:
    """A valid event with ``fields`` replaced (values written as given when bytes)."""
    parts = {"ts": json.dumps(VALID_TIME), "service": '"api"', "latency_ms": "12.5"}
    parts |= {name: v if isinstance(v, str) else json.dumps(v) for name, v in fields.items()}
    return ("{" + ",".join(f'"{name}":{v}' for name, v in parts.items()) + "}").encode()


def with_bytes(**fields: bytes) -> bytes:
    """A valid event whose text fields hold ``fields``' raw bytes between quotes (bytes
    that are not UTF-8, escapes written as they are)."""
    value = event(**{name: f'"@{name}@"' for name in fields})
    for name, raw in fields.items():
        value = value.replace(f"@{name}@".encode(), raw)
    return value


def _far_future() -> str:
    return (datetime.now(UTC) + timedelta(days=3650)).isoformat()


HOSTILE: dict[str, tuple[bytes | None, Outcome]] = {
    "top-level null": (b"null", "dead"),
    "tombstone": (None, "dead"),
    "empty": (b"", "dead"),
    "whitespace only": (b"  \t ", "dead"),
    "number": (b"42", "dead"),
    "string": (b'"text"', "dead"),
    "array": (b"[1, 2]", "dead"),
    "true": (b"true", "dead"),
    "null then object": (b"null " + event(), "dead"),
    "space then null": (b" null", "dead"),
    "two objects on two lines": (event() + b"\n" + event(), "dead"),
    "two objects on one line": (event() + b" " + event(), "dead"),
    "object then null": (event() + b" null", "dead"),
    "object, CR, null": (event() + b"\rnull", "dead"),
    "byte order mark": (b"\xef\xbb\xbf" + event(), "dead"),
    "not UTF-8": (b'{"ts": "\xff\xfe"}', "dead"),
    "truncated": (event()[:-7], "dead"),
    "NUL byte": (event() + b"\x00", "dead"),
    "time 1.5e300": (event(ts="1.5e300"), "dead"),
    "time -1.5e300": (event(ts="-1.5e300"), "dead"),
    "time Infinity": (event(ts="Infinity"), "dead"),
    "time NaN": (event(ts="NaN"), "dead"),
    "time 1e20": (event(ts="1e20"), "dead"),
    "time text 1e300": (event(ts='"1e300"'), "dead"),
    "time 1e999": (event(ts="1e999"), "dead"),
    "time year 9999": (event(ts='"9999-12-31T23:59:30Z"'), "dead"),
    "time year 1": (event(ts='"0001-01-01T00:00:00Z"'), "dead"),
    "time ten years ahead": (event(ts=json.dumps(_far_future())), "dead"),
    "time offset past 9999": (event(ts='"9999-12-31T23:59:59-05:00"'), "dead"),
    "time missing": (b'{"service": "api", "latency_ms": 1}', "dead"),
    "time null": (event(ts="null"), "dead"),
    "time true": (event(ts="true"), "dead"),
    "time unparseable": (event(ts='"yesterday"'), "dead"),
    "time an object": (event(ts='{"s": 1}'), "dead"),
    "key 2**70": (event(service=str(2**70)), "row"),
    "key 2**64 negative": (event(service=str(-(2**64))), "row"),
    "key true": (event(service="true"), "row"),
    "key NaN": (event(service="NaN"), "dead"),
    "key Infinity": (event(service="Infinity"), "dead"),
    "key nested deeply": (event(service="[" * DEEP + "]" * DEEP), "dead"),
    "key control characters": (event(service='"a\\u0000\\n/../b"'), "row"),
    "value NaN": (event(latency_ms="NaN"), "row"),
    "value Infinity": (event(latency_ms="Infinity"), "row"),
    "value -Infinity": (event(latency_ms="-Infinity"), "row"),
    "value 1e999": (event(latency_ms="1e999"), "row"),
    "value 10**400": (event(latency_ms="1" + "0" * 400), "row"),
    "value text NaN": (event(latency_ms='"NaN"'), "row"),
    "value an object": (event(latency_ms='{"a": 1}'), "row"),
    "unread field nested deeply": (event(extra="[" * DEEP + "]" * DEEP), "row"),
    "unread field NaN": (event(extra="NaN"), "row"),
    "duplicate time field": (event()[:-1] + b',"ts":"2024-05-01T12:00:01Z"}', "row"),
    "pretty-printed": (json.dumps(json.loads(event()), indent=2).encode(), "row"),
    "half a megabyte key": (event(service=json.dumps("k" * 500_000)), "row"),
    # Unicode: JSON text must be UTF-8 and its strings valid Unicode (RFC 8259).
    "key not UTF-8": (with_bytes(service=b"a\xffb"), "dead"),
    "time not UTF-8": (with_bytes(ts=b"2024-05-01T12:00:00Z\xfe"), "dead"),
    "not UTF-8 in a value field": (with_bytes(latency_ms=b"1\xff"), "dead"),
    "unread field not UTF-8": (with_bytes(extra=b"\xc3\x28"), "dead"),
    "field name not UTF-8": (event()[:-1] + b',"n\xff":1}', "dead"),
    "key CESU-8 surrogate bytes": (with_bytes(service=b"\xed\xa0\x80"), "dead"),
    "key overlong slash": (with_bytes(service=b"\xc0\xaf"), "dead"),
    "key truncated sequence": (with_bytes(service=b"a\xe2\x82"), "dead"),
    "key five-byte sequence": (with_bytes(service=b"\xf8\x88\x80\x80\x80"), "dead"),
    "key beyond U+10FFFF": (with_bytes(service=b"\xf4\x90\x80\x80"), "dead"),
    "key lone high surrogate escape": (with_bytes(service=b"\\ud800"), "dead"),
    "key lone low surrogate escape": (with_bytes(service=b"a\\udc00"), "dead"),
    "key reversed surrogate escapes": (with_bytes(service=b"\\udc00\\ud800"), "dead"),
    "key surrogate pair escape": (with_bytes(service=b"\\ud83d\\ude00"), "row"),
    "key nested with a lone surrogate": (event(service='{"k": "\\udfff"}'), "dead"),
    "value text lone surrogate": (with_bytes(latency_ms=b"\\ud800"), "row"),
    "unread field lone surrogate": (with_bytes(extra=b"\\ud800"), "row"),
    "key noncharacter U+FFFF": (with_bytes(service=b"\xef\xbf\xbf"), "row"),
    "key emoji": (with_bytes(service=b"\xf0\x9f\x98\x80"), "row"),
    "key byte order mark inside": (with_bytes(service=b"\xef\xbb\xbfa"), "row"),
    "key raw control character": (with_bytes(service=b"a\x01b"), "dead"),
    "key escaped NUL only": (with_bytes(service=b"\\u0000"), "row"),
}
"""Case name → (message value, what the lenient aggregate decoder makes of it)."""
