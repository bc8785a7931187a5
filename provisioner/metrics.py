"""Prometheus metrics: operations by kind and result, their durations, active operations and
environments by state (the last two read from the registry at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provisioner.db import Database
from provisioner.environments.repository import EnvironmentRepository
from provisioner.operations.repository import OperationRepository


class Metrics:
    """One per app, with its own registry (several apps may live in one test process)."""

    def __init__(self, database: Database) -> None:
        self.registry = CollectorRegistry()
        self.operations_finished = Counter(
            "provisioner_operations_total",
            "Operations finished, by kind and final state",
            ["kind", "result"],
            registry=self.registry,
        )
        self.operation_duration = Histogram(
            "provisioner_operation_duration_seconds",
            "Run time of finished operations, by kind",
            ["kind"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.registry.register(_RegistryCollector(database))


class _RegistryCollector(Collector):
    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.database.session(readonly=True) as session:
            by_state = EnvironmentRepository(session).count_by_state()
            active = OperationRepository(session).count_active_by_kind()
        environments = GaugeMetricFamily(
            "provisioner_environments", "Environments by state", labels=["state"]
        )
        for state, count in sorted(by_state.items()):
            environments.add_metric([state], count)
        yield environments
        operations = GaugeMetricFamily(
            "provisioner_operations_active", "Queued or running operations by kind", labels=["kind"]
        )
        for kind, count in sorted(active.items()):
            operations.add_metric([kind], count)
        yield operations
