"""Flows by name, as ``eventlake run NAME`` resolves them."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from bytewax.dataflow import Dataflow

from common.errors import ConfigError
from common.progress import Progress
from flows.runtime.settings import FlowSettings

FLOW_MODULES = {"monitoring": "flows.monitoring", "analytics": "flows.analytics"}


class FlowModule(Protocol):
    """What every flow module exposes."""

    @property
    def DEFAULT_TOPIC(self) -> str:  # noqa: N802 - a module constant in flow modules
        """The topic the flow reads when --topic is not given."""
        ...

    @property
    def TABLES(self) -> tuple[str, ...]:  # noqa: N802
        """Every table the flow writes, as directory names under ``--out``."""
        ...

    def build_flow(self, settings: FlowSettings, progress: Progress | None = None) -> Dataflow:
        """Build the flow's dataflow from validated settings."""
        ...


def flow_module(name: str) -> FlowModule:
    """The module of flow ``name``; ConfigError listing the known flows otherwise."""
    if name.endswith(".toml"):
        from flows.pipelines.files import load_pipeline
        from flows.pipelines.flow import PipelineFlow

        return PipelineFlow(load_pipeline(Path(name)))
    if name not in FLOW_MODULES:
        raise ConfigError(
            f"unknown flow {name!r}; choose from {sorted(FLOW_MODULES)} or pass a pipeline .toml"
        )
    module: FlowModule = importlib.import_module(FLOW_MODULES[name])
    return module
