"""Counting the fleet, and sampling the counts once per period (docs/architecture.md §7–§8).

The counts read each environment as its JSON shows it (`environment_public`), so `drift.status`
and `health.status` mean here exactly what they mean to an API client; an environment whose
JSON has no such field (never checked) counts as UNKNOWN, which is neither drifted nor failing.

Sampling runs inside the scheduler's tick (one transaction under its PostgreSQL advisory
lock), and the samples' primary key (period, tenant) refuses a second writer of a period, so
however many replicas tick, each period is sampled once; the samples live in the registry, so
a restart keeps them. Samples older than the retention are pruned in the same tick.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.schemas import FleetView, environment_public
from provisioner.fleet.models import WHOLE_FLEET
from provisioner.fleet.repository import FleetSampleRepository
from provisioner.fleet.schemas import (
    CodeVersionCount,
    FleetHistory,
    FleetSamplePublic,
    FleetSummary,
    TemplateVersionCount,
)
from provisioner.monitoring.repository import HealthRepository
from provisioner.templates.repository import TemplateRepository

log = structlog.get_logger(__name__)

UNKNOWN: Final = "UNKNOWN"
DRIFTED: Final = "DRIFTED"
# Health statuses that are not a failure: fine, or not known yet (CloudWatch's own word too).
NOT_FAILING: Final = frozenset({"OK", "HEALTHY", UNKNOWN, "INSUFFICIENT_DATA"})


@dataclass(frozen=True)
class _Signals:
    """What the counts need of one environment, read from its JSON."""

    tenant: str
    state: str
    template: str
    version: int
    latest_version: int
    code_version: str | None
    outdated: bool
    drift: str
    health: str

    @property
    def live(self) -> bool:
        return self.state != EnvironmentState.DESTROYED

    @property
    def drifted(self) -> bool:
        return self.drift == DRIFTED

    @property
    def failing(self) -> bool:
        return self.state == EnvironmentState.FAILED or self.health not in NOT_FAILING


def _status(document: dict[str, Any], field: str) -> str:
    value = document.get(field)
    status = value.get("status") if isinstance(value, dict) else None
    return str(status) if status else UNKNOWN


class FleetService:
    def __init__(self, session: Session, code_version: str) -> None:
        self.session = session
        self.code_version = code_version
        self.samples = FleetSampleRepository(session)

    def _signals(self, tenant: str | None) -> list[_Signals]:
        query = select(EnvironmentRow).order_by(EnvironmentRow.tenant, EnvironmentRow.name)
        if tenant is not None:
            query = query.where(EnvironmentRow.tenant == tenant)
        rows = self.session.scalars(query).all()
        latest = TemplateRepository(self.session).latest_versions({r.template_name for r in rows})
        view = FleetView(latest_versions=latest, code_version=self.code_version)
        health = HealthRepository(self.session).by_environments(row.id for row in rows)
        signals = []
        for row in rows:
            document = environment_public(row, None, {}, view, health.get(row.id)).model_dump(
                mode="json", by_alias=True
            )
            signals.append(
                _Signals(
                    tenant=row.tenant,
                    state=row.state,
                    template=row.template_name,
                    version=row.template_version,
                    latest_version=latest.get(row.template_name, row.template_version),
                    code_version=row.code_version,
                    outdated=bool(document["outdated"]),
                    drift=_status(document, "drift"),
                    health=_status(document, "health"),
                )
            )
        return signals

    def summary(self, tenant: str | None, now: datetime) -> FleetSummary:
        return self._summarize(tenant, self._signals(tenant), now)

    def _summarize(
        self, tenant: str | None, signals: list[_Signals], now: datetime
    ) -> FleetSummary:
        live = [s for s in signals if s.live]
        templates: dict[tuple[str, int], list[_Signals]] = defaultdict(list)
        codes: Counter[str | None] = Counter()
        for signal in live:
            templates[(signal.template, signal.version)].append(signal)
            codes[signal.code_version] += 1
        return FleetSummary(
            tenant=tenant,
            code_version=self.code_version,
            generated_at=now,
            total=len(live),
            by_state=dict(Counter(s.state for s in signals)),
            outdated=sum(s.outdated for s in live),
            drifted=sum(s.drifted for s in live),
            failing=sum(s.failing for s in live),
            drift=dict(Counter(s.drift for s in live)),
            health=dict(Counter(s.health for s in live)),
            by_template=[
                TemplateVersionCount(
                    template=name,
                    version=version,
                    latest_version=members[0].latest_version,
                    environments=len(members),
                    outdated=sum(m.outdated for m in members),
                )
                for (name, version), members in sorted(templates.items())
            ],
            by_code_version=[
                CodeVersionCount(
                    code_version=code, environments=count, current=code == self.code_version
                )
                for code, count in sorted(codes.items(), key=lambda item: (-item[1], item[0] or ""))
            ],
        )

    # --- samples over time ---

    def record_sample(self, now: datetime, interval_s: float, retention: timedelta) -> int:
        """Sample this period unless a replica (or an earlier tick) did; prune old samples.
        Returns the number of sample rows written (0: the period was sampled already)."""
        pruned = self.samples.prune(now - retention)
        period = period_start(now, interval_s)
        if self.samples.has_period(period, WHOLE_FLEET):
            return 0
        signals = self._signals(None)
        by_tenant: dict[str, list[_Signals]] = defaultdict(list)
        for signal in signals:
            by_tenant[signal.tenant].append(signal)
        rows = [_sample_row(period, WHOLE_FLEET, signals, now)]
        rows += [_sample_row(period, t, members, now) for t, members in by_tenant.items()]
        written = self.samples.add_period(rows)
        log.debug("fleet.sampled", period=period.isoformat(), rows=written, pruned=pruned)
        return written

    def history(
        self, tenant: str | None, now: datetime, minutes: int, interval_s: float
    ) -> FleetHistory:
        start = period_start(now - timedelta(minutes=minutes), interval_s)
        rows = self.samples.since(WHOLE_FLEET if tenant is None else tenant, start)
        return FleetHistory(
            tenant=tenant,
            minutes=minutes,
            interval_seconds=interval_s,
            samples=[
                FleetSamplePublic(
                    at=row.period_start,
                    environments=row.environments,
                    failing=row.failing,
                    drifted=row.drifted,
                    outdated=row.outdated,
                )
                for row in rows
            ],
        )


def period_start(now: datetime, interval_s: float) -> datetime:
    """The start of the sampling period `now` falls in: the same instant in every replica."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % interval_s, UTC)


def _sample_row(
    period: datetime, tenant: str, signals: Iterable[_Signals], now: datetime
) -> dict[str, Any]:
    live = [s for s in signals if s.live]
    return {
        "period_start": period,
        "recorded_at": now,
        "tenant": tenant,
        "environments": len(live),
        "failing": sum(s.failing for s in live),
        "drifted": sum(s.drifted for s in live),
        "outdated": sum(s.outdated for s in live),
    }
