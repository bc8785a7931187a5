"""The work one scheduler tick does, in one registry transaction (docs/architecture.md §8):
expiry warnings and destroys, expiry of unapproved operations, drift checks and remediations
(`provisioner.schedules.drift`).

Replicas sharing a PostgreSQL registry tick at once: a transaction advisory lock makes their
ticks take turns, and each destroy is also claimed by a compare-and-set of the environment's
`expired_at`, so an environment is destroyed once and each warning goes out once. Everything
a tick decides is in the registry (`expiry_warnings_sent`, `expired_at`, the operations), so a
restart neither repeats nor loses anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from provisioner.config import Settings
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.environments import notifications
from provisioner.environments.approvals import expire_unapproved
from provisioner.environments.lifecycle import LIFECYCLE
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.service import (
    SYSTEM_PRINCIPAL,
    EnvironmentService,
    OperationOrder,
    environment_config,
    request_fingerprint,
)
from provisioner.fleet.service import FleetService
from provisioner.operations.repository import OperationRepository
from provisioner.schedules.drift import queue_due_checks, remediate_drift

log = structlog.get_logger(__name__)

# Serialises scheduler ticks across replicas on PostgreSQL (an arbitrary, fixed key).
_TICK_LOCK_KEY: Final = 0x6D64705F + 1


@dataclass
class TickResult:
    warnings: list[tuple[str, int]] = field(default_factory=list)  # (environment id, lead)
    destroys: list[str] = field(default_factory=list)  # operation ids
    approvals_expired: list[str] = field(default_factory=list)  # operation ids
    remediations: list[str] = field(default_factory=list)  # operation ids
    drift_checks: list[str] = field(default_factory=list)  # operation ids
    fleet_samples: int = 0  # rows written (0: this period was sampled already)

    @property
    def queued(self) -> bool:
        """Whether the tick queued operations (the runner should look now)."""
        return bool(self.destroys or self.remediations or self.drift_checks)


def run_tick(
    session: Session, settings: Settings, engine: str, now: datetime, code_version: str
) -> TickResult:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TICK_LOCK_KEY})
    result = TickResult()
    result.warnings = _send_expiry_warnings(session, settings, now)
    result.destroys = _destroy_expired(session, settings, engine, now)
    ttl = settings.approval_ttl_minutes
    result.approvals_expired = expire_unapproved(session, now - timedelta(minutes=ttl), ttl)
    # Remediations first: a drifted environment is restored before it is checked again.
    result.remediations = remediate_drift(session, settings, engine)
    result.drift_checks = queue_due_checks(session, settings, engine, now)
    result.fleet_samples = FleetService(session, code_version).record_sample(
        now,
        settings.fleet_sample_interval_s,
        timedelta(hours=settings.fleet_sample_retention_hours),
    )
    return result


def _pending_expiry(session: Session, before: datetime) -> list[EnvironmentRow]:
    return list(
        session.scalars(
            select(EnvironmentRow)
            .where(
                EnvironmentRow.expires_at.is_not(None),
                EnvironmentRow.expires_at <= before,
                EnvironmentRow.expired_at.is_(None),
                EnvironmentRow.state != EnvironmentState.DESTROYED,
            )
            .order_by(EnvironmentRow.expires_at)
        ).all()
    )


def _send_expiry_warnings(
    session: Session, settings: Settings, now: datetime
) -> list[tuple[str, int]]:
    leads = settings.expiry_warnings_minutes
    if not leads:
        return []
    sent: list[tuple[str, int]] = []
    for row in _pending_expiry(session, now + timedelta(minutes=max(leads))):
        assert row.expires_at is not None
        if row.expires_at <= now:
            continue  # expired: the destroy's own event says so
        already = set(row.expiry_warnings_sent or [])
        due = [
            lead
            for lead in leads
            if lead not in already and now >= row.expires_at - timedelta(minutes=lead)
        ]
        if not due:
            continue
        # Lead times that passed together (an expiry set closer than them) make one warning,
        # the nearest; the others count as sent.
        lead = min(due)
        row.expiry_warnings_sent = sorted(already | set(due), reverse=True)
        notifications.publish(
            session,
            "environment.expiring",
            row.tenant,
            {
                "tenant": row.tenant,
                "name": row.name,
                "expiresAt": row.expires_at.isoformat(),
                "leadMinutes": lead,
            },
        )
        log.info("schedules.expiry_warning", tenant=row.tenant, name=row.name, lead_minutes=lead)
        sent.append((row.id, lead))
    session.flush()
    return sent


def _destroy_expired(session: Session, settings: Settings, engine: str, now: datetime) -> list[str]:
    operations = OperationRepository(session)
    service = EnvironmentService(session, settings, engine)
    queued: list[str] = []
    for row in _pending_expiry(session, now):
        if row.state not in LIFECYCLE[OperationKind.DESTROY].allowed_from:
            continue  # still provisioning or updating: the next tick tries again
        if operations.active_for(row.id) is not None:
            continue
        claimed = session.execute(
            update(EnvironmentRow)
            .where(EnvironmentRow.id == row.id, EnvironmentRow.expired_at.is_(None))
            .values(expired_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue
        session.refresh(row)
        assert row.expires_at is not None
        order = OperationOrder(
            OperationKind.DESTROY,
            environment_config(row),
            state_before=EnvironmentState(row.state),
            fingerprint=request_fingerprint("EXPIRE", row.id, None),
        )
        operation = service.enqueue(SYSTEM_PRINCIPAL, row, order)
        operations.append_event(
            operation.id,
            EngineEvent(
                EventType.DIAGNOSTIC,
                f"environment {row.tenant}/{row.name} expired at {row.expires_at.isoformat()}: "
                "destroyed by the service",
                severity="info",
                data={"reason": "expired", "expiresAt": row.expires_at.isoformat()},
            ),
        )
        notifications.publish(
            session,
            "environment.expired",
            row.tenant,
            {
                "tenant": row.tenant,
                "name": row.name,
                "expiresAt": row.expires_at.isoformat(),
                "operationId": operation.id,
            },
        )
        log.info("schedules.environment_expired", tenant=row.tenant, name=row.name)
        queued.append(operation.id)
    session.flush()
    return queued
