"""The long-lived objects one app instance shares, created in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.engines.base import EngineHost
from provisioner.metrics import Metrics
from provisioner.notifier import OperationNotifier
from provisioner.registry.database import Database
from provisioner.runner import OperationRunner
from provisioner.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    engine_name: str
    host: EngineHost
    runner: OperationRunner
    metrics: Metrics
    notifier: OperationNotifier
