"""Safe Hive path segments: any value becomes one ``name=value`` directory name.

Values are percent-encoded as URIs (the encoding pyarrow, Spark and Hive
decode), so ``/``, ``..``, ``=``, control and non-ASCII characters can neither
escape the table directory nor hide it from readers. Null becomes Hive's
default partition. A value whose encoding would exceed the file-system limit
on a name is cut and ends in a hash of the whole value, so distinct values
still get distinct directories.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

NULL_SEGMENT_VALUE = "__HIVE_DEFAULT_PARTITION__"
MAX_SEGMENT_BYTES = 255
_HASH_CHARS = 16
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def hive_segment(name: str, value: object) -> str:
    """The directory name ``name=<encoded value>``: one path component, at most
    255 bytes, never ``.``/``..`` or hidden, and different for different values.

    Raises ValueError for a ``name`` that is not a plain identifier.
    """
    if not _NAME.match(name):
        raise ValueError(f"partition column name {name!r} must be a plain identifier")
    encoded = NULL_SEGMENT_VALUE if value is None else quote(str(value), safe="")
    segment = f"{name}={encoded}"
    if len(segment) <= MAX_SEGMENT_BYTES:
        return segment
    digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
    keep = MAX_SEGMENT_BYTES - _HASH_CHARS - 1
    cut = segment[:keep]
    cut = cut[: cut.rfind("%")] if "%" in cut[-2:] else cut  # never split an escape
    return f"{cut}~{digest[:_HASH_CHARS]}"
