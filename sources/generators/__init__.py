"""Seeded synthetic event generators: request monitoring and shop analytics.

``GENERATORS`` maps each generator's ``name`` to its class; every generator is an
:class:`EventGenerator` whose :meth:`~EventGenerator.events` stream is fully
determined by its constructor arguments.
"""

from sources.generators.analytics import AnalyticsGenerator
from sources.generators.base import (
    DEFAULT_EVENT_RATE,
    EventGenerator,
    GeneratorConfigError,
    format_ts,
)
from sources.generators.monitoring import (
    DEFAULT_DISORDER,
    BurstSchedule,
    Endpoint,
    MonitoringGenerator,
    Service,
)

GENERATORS: dict[str, type[EventGenerator]] = {
    MonitoringGenerator.name: MonitoringGenerator,
    AnalyticsGenerator.name: AnalyticsGenerator,
}

__all__ = [
    "DEFAULT_DISORDER",
    "DEFAULT_EVENT_RATE",
    "GENERATORS",
    "AnalyticsGenerator",
    "BurstSchedule",
    "Endpoint",
    "EventGenerator",
    "GeneratorConfigError",
    "MonitoringGenerator",
    "Service",
    "format_ts",
]
