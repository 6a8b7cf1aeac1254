"""Flows by name, as ``eventlake run NAME`` resolves them."""

from __future__ import annotations

import importlib
from typing import Protocol

from bytewax.dataflow import Dataflow

from flows.settings import FlowSettings
from sources.errors import ConfigError
from sources.progress import Progress

FLOW_MODULES = {"monitoring": "flows.monitoring", "analytics": "flows.analytics"}


class FlowModule(Protocol):
    """What every flow module exposes."""

    DEFAULT_TOPIC: str
    TABLES: tuple[str, ...]

    def build_flow(self, settings: FlowSettings, progress: Progress | None = None) -> Dataflow:
        """Build the flow's dataflow from validated settings."""
        ...


def flow_module(name: str) -> FlowModule:
    """The module of flow ``name``; ConfigError listing the known flows otherwise."""
    if name not in FLOW_MODULES:
        raise ConfigError(f"unknown flow {name!r}; choose from {sorted(FLOW_MODULES)}")
    module: FlowModule = importlib.import_module(FLOW_MODULES[name])
    return module
