"""The analytics flow: revenue per category in hopping windows, and user sessions.

Tables: ``category_revenue`` (hopping windows, default 1 hour sliding by 15
minutes: event count, revenue, orders, units, distinct users with the HLL
sketch, top-5 products) and ``user_sessions`` (session windows per user,
default gap 30 minutes: event count, views, carts, purchases, revenue, first
and last event, converted), plus ``late`` and ``dead_letter``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow

from common.metrics import RunMetrics
from common.units import UTC_MICROS, micros
from flows.engine.aggregations import Count, Distinct, Stat, TopK
from flows.engine.tables import TableSpec
from flows.engine.windows import Hopping, Session
from flows.runtime.dataflow import KAFKA_TO_PARQUET, SHARED_TABLES, FlowIO, build_pipeline
from flows.runtime.flow import Flow
from flows.runtime.settings import FlowSettings
from sources.decode import JsonDecoder
from sources.generators import AnalyticsGenerator

DEFAULT_TOPIC = AnalyticsGenerator.default_topic
REVENUE_TABLE = "category_revenue"
SESSIONS_TABLE = "user_sessions"
TABLES = (REVENUE_TABLE, SESSIONS_TABLE, *SHARED_TABLES)
DEFAULT_WINDOW_S = 3600.0
DEFAULT_SLIDE_S = 900.0
DEFAULT_SESSION_GAP_S = 1800.0

EVENT_SCHEMA = pa.schema(
    [
        ("ts", UTC_MICROS),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("event_type", pa.string()),
        ("product_id", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
    ]
)
DECODER = JsonDecoder(EVENT_SCHEMA, "ts", required=("user_id", "event_type"))
INT64 = pa.int64()


def _with_funnel(events: pa.Table) -> pa.Table:
    """Indicator columns per event type, and revenue/units of purchases."""
    kind = events["event_type"]
    purchase = pc.equal(kind, "purchase")
    revenue = pc.multiply(events["price"], events["quantity"].cast(pa.float64()))
    columns = {
        "is_view": pc.equal(kind, "view").cast(INT64),
        "is_cart": pc.equal(kind, "add_to_cart").cast(INT64),
        "is_purchase": purchase.cast(INT64),
        "revenue": pc.if_else(purchase, revenue, pa.scalar(None, pa.float64())),
        "units": pc.if_else(purchase, events["quantity"], pa.scalar(None, INT64)),
    }
    for name, column in columns.items():
        events = events.append_column(name, column)
    return events


def _zero_when_empty(windows: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """Sums over no purchases are 0, not null."""
    for name in names:
        index = windows.schema.get_field_index(name)
        column = windows[name]
        windows = windows.set_column(index, name, pc.coalesce(column, pa.scalar(0, column.type)))
    return windows


def _finish_revenue(windows: pa.Table) -> pa.Table:
    return _zero_when_empty(windows, ("revenue", "orders", "units"))


def _finish_sessions(windows: pa.Table) -> pa.Table:
    windows = _zero_when_empty(windows, ("revenue",))
    return windows.append_column("converted", pc.greater(windows["purchases"], 0))


def revenue_spec(window_s: float, slide_s: float) -> TableSpec:
    """``category_revenue``: one row per category and hopping window."""
    return TableSpec(
        name=REVENUE_TABLE,
        keys=("category",),
        window=Hopping(micros(window_s), micros(slide_s)),
        aggregations=(
            Count(),
            Stat("sum", "revenue", "revenue"),
            Stat("sum", "is_purchase", "orders", output_type=INT64),
            Stat("sum", "units", "units", output_type=INT64),
            Distinct("user_id"),
            TopK("product_id", 5),
        ),
        event_schema=EVENT_SCHEMA,
        derive=_with_funnel,
        finish=_finish_revenue,
    )


def sessions_spec(gap_s: float, max_session_s: float | None = None) -> TableSpec:
    """``user_sessions``: one row per user session, cut by ``max_session_s`` if given."""
    return TableSpec(
        name=SESSIONS_TABLE,
        keys=("user_id",),
        window=Session(micros(gap_s), None if max_session_s is None else micros(max_session_s)),
        aggregations=(
            Count(),
            Stat("sum", "is_view", "views", output_type=INT64),
            Stat("sum", "is_cart", "carts", output_type=INT64),
            Stat("sum", "is_purchase", "purchases", output_type=INT64),
            Stat("sum", "revenue", "revenue"),
            Stat("min", "ts", "first_event", output_type=UTC_MICROS),
            Stat("max", "ts", "last_event", output_type=UTC_MICROS),
        ),
        event_schema=EVENT_SCHEMA,
        derive=_with_funnel,
        finish=_finish_sessions,
    )


def build_flow(
    settings: FlowSettings, metrics: RunMetrics | None = None, io: FlowIO = KAFKA_TO_PARQUET
) -> Dataflow:
    """The analytics dataflow, writing its :data:`TABLES` under ``settings.out``."""
    specs = [
        revenue_spec(settings.window_s or DEFAULT_WINDOW_S, settings.slide_s or DEFAULT_SLIDE_S),
        sessions_spec(settings.session_gap_s or DEFAULT_SESSION_GAP_S, settings.max_session_s),
    ]
    return build_pipeline("analytics", settings, DECODER, specs, metrics, io).flow


FLOW = Flow("analytics", DEFAULT_TOPIC, TABLES, build_flow)
"""The analytics flow, as ``eventlake run analytics`` finds it."""
