"""The long-lived objects one app instance shares, created in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioner.auth.recent import RecentKeys
from provisioner.config import Settings
from provisioner.db import Database
from provisioner.engines.base import EngineHost
from provisioner.environments.listing import EnvironmentPages
from provisioner.metrics import Metrics
from provisioner.operations.events import OperationNotifier
from provisioner.operations.runner import OperationRunner
from provisioner.rollouts.scheduler import RolloutScheduler
from provisioner.schedules.scheduler import Scheduler


@dataclass(frozen=True)
class AppState:
    settings: Settings
    database: Database
    engine_name: str
    host: EngineHost
    runner: OperationRunner
    metrics: Metrics
    notifier: OperationNotifier
    scheduler: Scheduler
    rollouts: RolloutScheduler
    # The service's code version (provisioner.versions), or the one a test gave create_app.
    code_version: str
    recent_keys: RecentKeys = field(default_factory=RecentKeys)
    environment_pages: EnvironmentPages = field(default_factory=EnvironmentPages)
