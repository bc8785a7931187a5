"""Engines turn a `PipelineConfig` into (or out of) real infrastructure, behind one interface.

`ENGINES` is the one table from an engine's name to its implementation. Engines are named by
import reference ("module:Class") so that worker processes can load them by name, and so that
importing this package imports no engine (the pulumi engine needs `pulumi.automation`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final, cast

from provisioner.config import Settings
from provisioner.engines.base import Engine, EngineHost
from provisioner.engines.worker_host import WorkerOnlyHost


@dataclass(frozen=True)
class EngineEntry:
    engine: str  # the worker-side `Engine` class
    # The main-process `EngineHost` class; None: the engine keeps nothing in the service's
    # process (`provisioner.engines.worker_host.WorkerOnlyHost`).
    host: str | None = None


ENGINES: Final[dict[str, EngineEntry]] = {
    "local": EngineEntry(
        engine="provisioner.engines.local.engine:LocalEngine",
        host="provisioner.engines.local.host:LocalHost",
    ),
    "pulumi": EngineEntry(engine="provisioner.engines.pulumi.engine:PulumiEngine"),
}


def engine_reference(name: str) -> str:
    """The import reference of the engine called `name` (a `Settings.engine` value)."""
    return ENGINES[name].engine


def load_engine(reference: str) -> type[Engine]:
    """Import an engine class from "package.module:ClassName"."""
    return cast(type[Engine], _load(reference))


def build_host(reference: str, settings: Settings) -> EngineHost:
    """The main-process half of the engine at `reference`.

    Engines outside the table (the tests' scripted engine) get the worker-only host.
    """
    entry = next((e for e in ENGINES.values() if e.engine == reference), None)
    if entry is not None and entry.host is not None:
        return cast(EngineHost, _load(entry.host)(settings))
    return WorkerOnlyHost(load_engine(reference), settings)


def _load(reference: str) -> type:
    module_name, _, class_name = reference.partition(":")
    loaded: type = getattr(importlib.import_module(module_name), class_name)
    return loaded
