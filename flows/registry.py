"""Flows by name, as ``eventlake run NAME`` resolves them: a built-in flow, a pipeline
``.toml`` file, or ``module:attribute`` naming a :class:`~flows.runtime.flow.Flow`
(as ``python -m bytewax.run module:flow`` does)."""

from __future__ import annotations

import importlib
from pathlib import Path

from common.errors import ConfigError
from flows.pipelines.files import load_pipeline
from flows.pipelines.flow import pipeline_flow
from flows.runtime.flow import Flow

BUILT_IN = {"monitoring": "flows.monitoring:FLOW", "analytics": "flows.analytics:FLOW"}


def resolve_flow(name: str) -> Flow:
    """The flow ``name`` stands for; ConfigError listing the choices otherwise."""
    if name.endswith(".toml"):
        return pipeline_flow(load_pipeline(Path(name)), name)
    module_name, _, attribute = BUILT_IN.get(name, name).partition(":")
    if not attribute:
        raise ConfigError(
            f"unknown flow {name!r}; choose from {sorted(BUILT_IN)}, a pipeline .toml file "
            "or MODULE:ATTRIBUTE naming a Flow"
        )
    try:
        flow = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load flow {name!r}: {err}") from None
    if not isinstance(flow, Flow):
        raise ConfigError(f"{name} is a {type(flow).__name__}, not a flows.runtime.flow.Flow")
    return flow
