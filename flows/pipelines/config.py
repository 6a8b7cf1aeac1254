"""What ``eventlake aggregate`` and pipeline files ask for, parsed and checked up front.

A :class:`PipelineConfig` is one topic (its time field and format) and one or
more :class:`AggregationConfig` tables over it. Everything is validated
before anything starts; each error names the option and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from common.errors import ConfigError
from common.units import micros, parse_duration
from flows.engine.aggregations import STATS, Aggregation, Count, Distinct, Quantiles, Stat, TopK
from flows.engine.windows import Hopping, Session, Tumbling, WindowSpec
from flows.pipelines.filters import Filter, parse_filter
from flows.runtime.dataflow import SHARED_TABLES
from flows.runtime.settings import FlowSettings
from sources.flexible_decode import INVALID_VALUES, TIME_FORMATS, FlexibleTimeFormat

AGGREGATIONS = ("count", *STATS, "pNN", "distinct[:FIELD]", "topk[:FIELD[:K]]")
DEFAULT_TOPK = 5
_QUANTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_FIELD = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*$")


@dataclass(frozen=True)
class AggregationConfig:
    """One output table: keys, window, aggregations, optional filter."""

    table: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    window: WindowSpec
    aggregations: tuple[Aggregation[Any], ...]
    filter: Filter | None = None

    @property
    def text_fields(self) -> tuple[str, ...]:
        """Fields decoded as text: keys, named distinct/topk fields, string filters."""
        named = [a.field for a in self.aggregations if isinstance(a, Distinct | TopK)]
        filtered = self.filter.text_fields if self.filter else ()
        return _unique([*self.keys, *named, *filtered], exclude=self.number_fields)

    @property
    def number_fields(self) -> tuple[str, ...]:
        """Fields decoded as numbers: values and numeric filters."""
        return _unique([*self.values, *(self.filter.number_fields if self.filter else ())])


@dataclass(frozen=True)
class PipelineConfig:
    """A topic and the tables computed from it."""

    topic: str
    time_field: str
    tables: tuple[AggregationConfig, ...]
    time_format: FlexibleTimeFormat = "auto"
    lateness_s: float = FlowSettings.lateness_s
    strict: bool = False
    """Dead-letter messages whose value fields are not numbers (else count them)."""
    kafka: Mapping[str, str] = field(default_factory=dict)
    """Kafka client settings of a pipeline file's ``[kafka]`` table."""

    def __post_init__(self) -> None:
        check_field("time field", self.time_field)
        if self.time_format not in TIME_FORMATS:
            raise ConfigError(
                f"--time-format {self.time_format!r} is unknown; choose from {list(TIME_FORMATS)}"
            )
        names = [table.table for table in self.tables]
        if len(set(names)) != len(names):
            raise ConfigError(f"table names must differ; got {names}")
        for table in self.tables:
            if self.time_field in table.keys:
                raise ConfigError(f"the time field {self.time_field!r} cannot also be a --key")
        _check_one_type_per_field(self.tables)

    @property
    def text_fields(self) -> tuple[str, ...]:
        """Every text field any table reads."""
        return _unique([name for t in self.tables for name in t.text_fields])

    @property
    def number_fields(self) -> tuple[str, ...]:
        """Every number field any table reads."""
        return _unique([name for t in self.tables for name in t.number_fields])


def _check_one_type_per_field(tables: tuple[AggregationConfig, ...]) -> None:
    """ConfigError if a field is read as text in one place and as a number in another:
    a pipeline decodes each field once."""
    seen: dict[str, tuple[str, str]] = {}
    for table in tables:
        as_text = {*table.text_fields, *table.keys}
        for kind, names in ((_TEXT, as_text), (_NUMBER, set(table.number_fields))):
            for name in sorted(names):
                first_kind, first_table = seen.setdefault(name, (kind, table.table))
                if first_kind != kind:
                    raise ConfigError(
                        f"field {name!r} is read as {first_kind} by table {first_table} and "
                        f"as {kind} by table {table.table}, but a pipeline decodes each field "
                        f"once: compare it with quoted text ({name} == '500'), or give the "
                        "tables pipelines of their own"
                    )


_TEXT = "text (a key, a text comparison, distinct or topk)"
_NUMBER = "a number (a value or a numeric comparison)"


def aggregation_config(
    table: str,
    keys: list[str],
    values: list[str],
    aggregations: list[str],
    window: WindowSpec,
    filter_text: str | None = None,
) -> AggregationConfig:
    """Parse one table's options; ConfigError naming the option otherwise."""
    check_table_name(table)
    for name in (*keys, *values):
        check_field("--key/--value", name)
    if not keys:
        raise ConfigError("--key needs at least one field, e.g. --key service")
    overlap = sorted(set(keys) & set(values))
    if overlap:
        raise ConfigError(f"{overlap[0]!r} cannot be both a --key and a --value")
    parsed = parse_aggregations(aggregations, values)
    return AggregationConfig(
        table,
        tuple(keys),
        tuple(values),
        window,
        (*parsed, Stat("sum", INVALID_VALUES, INVALID_VALUES, output_type=pa.int64())),
        None if filter_text is None else parse_filter(filter_text),
    )


def parse_aggregations(terms: list[str], values: list[str]) -> list[Aggregation[Any]]:
    """``count``, ``sum``…, ``pNN``, ``distinct[:F]``, ``topk[:F[:K]]`` as aggregations,
    value aggregations once per ``--value`` field."""
    if not terms:
        raise ConfigError(f"--agg needs at least one aggregation from {list(AGGREGATIONS)}")
    aggregations: list[Aggregation[Any]] = [Count()]
    quantiles: list[float] = []
    for term in terms:
        name, *args = term.strip().split(":")
        if name == "count" and not args:
            continue
        if name in STATS and not args:
            aggregations += [Stat(name, f) for f in _needs_values(term, values)]
        elif _QUANTILE.match(name) and not args:
            quantiles.append(_quantile(term))
        elif name == "distinct" and len(args) <= 1:
            aggregations += [Distinct(f) for f in _fields_of(term, args[:1], values)]
        elif name == "topk" and len(args) <= 2:
            k = _topk_size(term, args[1]) if len(args) == 2 else DEFAULT_TOPK
            aggregations += [TopK(f, k) for f in _fields_of(term, args[:1], values)]
        else:
            raise ConfigError(
                f"unknown aggregation {term!r} in --agg; choose from {list(AGGREGATIONS)}"
            )
    if quantiles:
        ordered = tuple(sorted(set(quantiles)))
        aggregations += [Quantiles(f, ordered) for f in _needs_values("pNN", values)]
    return aggregations


def window_spec(
    window_s: float | None,
    slide_s: float | None,
    gap_s: float | None,
    max_session_s: float | None = None,
) -> WindowSpec:
    """Tumbling (``--window``), hopping (``--slide`` too) or session (``--session-gap``,
    cut by ``--max-session``)."""
    if max_session_s is not None and gap_s is None:
        raise ConfigError(
            "--max-session limits session windows; add --session-gap, or drop --max-session"
        )
    if gap_s is not None:
        if slide_s is not None:
            raise ConfigError("pass either --slide (hopping windows) or --session-gap, not both")
        return Session(micros(gap_s), None if max_session_s is None else micros(max_session_s))
    if window_s is None:
        raise ConfigError("--window is required (e.g. --window 1h), unless --session-gap is given")
    if slide_s is None:
        return Tumbling(micros(window_s))
    return Hopping(micros(window_s), micros(slide_s))


def seconds(option: str, text: str, allow_zero: bool = False) -> float:
    """A duration option's value in seconds (zero only with ``allow_zero``); ConfigError
    naming ``option``."""
    try:
        return parse_duration(text, allow_zero).total_seconds()
    except ConfigError as err:
        raise ConfigError(f"{option}: {err}") from None


def check_field(option: str, name: str) -> None:
    """ConfigError unless ``name`` is a field path like ``user_id`` or ``request.service``."""
    if not _FIELD.match(name):
        raise ConfigError(
            f"{option} {name!r} is not a field name; use letters, digits, _ and - and dots "
            "for nested fields, e.g. request.service"
        )


def check_table_name(name: str) -> None:
    """ConfigError unless ``name`` is a plain directory name under ``--out`` that no
    flow table uses: no path separators, dots, hidden or empty names."""
    if not _TABLE_NAME.match(name):
        raise ConfigError(
            f"table {name!r} is not a table name; it becomes a directory under --out, so use "
            'letters, digits, _ and - (starting with a letter or digit), e.g. table = "delays"'
        )
    if name in SHARED_TABLES:
        raise ConfigError(f"table {name!r} is reserved for every flow's own table; pick another")


def _needs_values(term: str, values: list[str]) -> list[str]:
    if not values:
        raise ConfigError(f"aggregation {term!r} needs --value fields to apply to")
    return values


def _fields_of(term: str, named: list[str], values: list[str]) -> list[str]:
    if named:
        check_field(f"aggregation {term!r}:", named[0])
        return named
    return _needs_values(term, values)


def _quantile(term: str) -> float:
    match = _QUANTILE.match(term)
    percent = float(match.group(1)) if match else 0.0
    if not 0 < percent < 100:
        raise ConfigError(f"quantile {term!r} must be between p0 and p100, e.g. p95 or p99.9")
    return percent / 100


def _topk_size(term: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{term!r}: K must be a positive whole number, e.g. topk:product_id:5")
    return int(text)


def _unique(names: list[str], exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(name for name in dict.fromkeys(names) if name not in exclude)
