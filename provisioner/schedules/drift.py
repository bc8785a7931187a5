"""Scheduled drift checks and their remediation, a part of every scheduler tick
(docs/architecture.md §8).

An environment with checks on (its own `driftCheck.intervalMinutes`, else the service's
`drift_check_minutes`) has its next check's due time in the registry (`drift_due_at`). A due
check is claimed by a compare-and-set that moves the due time on, in the savepoint that queues
it: replicas never queue two checks for one due time, and a restart finds the due times where
it left them. With `remediate`, a check that found drift gets one update (requested by
`system`), claimed by a compare-and-set of `drift_remediated_for` to that check's operation.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import Session

from provisioner.config import Settings
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.environments.models import DriftStatus, EnvironmentRow, EnvironmentState
from provisioner.environments.service import (
    SYSTEM_PRINCIPAL,
    EnvironmentService,
    OperationOrder,
    environment_config,
    request_fingerprint,
)
from provisioner.errors import ConflictError
from provisioner.operations.repository import OperationRepository

log = structlog.get_logger(__name__)


def check_interval(row: EnvironmentRow, settings: Settings) -> int:
    """Minutes between the environment's drift checks; 0: none."""
    own = row.drift_check_minutes
    return settings.drift_check_minutes if own is None else own


def checks_on(settings: Settings) -> ColumnElement[bool]:
    """The registry's side of `check_interval(row, settings) > 0`."""
    own = EnvironmentRow.drift_check_minutes
    if settings.drift_check_minutes > 0:
        return or_(own.is_(None), own > 0)
    return own > 0


def check_candidates(settings: Settings, now: datetime) -> Select[EnvironmentRow]:
    """READY environments with checks on whose check is due or not yet scheduled.

    Environments with checks off are not loaded: a tick is every few seconds, and a fleet
    that never asked for checks must not cost a read of every environment."""
    return (
        select(EnvironmentRow)
        .where(
            EnvironmentRow.state == EnvironmentState.READY,
            checks_on(settings),
            or_(EnvironmentRow.drift_due_at.is_(None), EnvironmentRow.drift_due_at <= now),
        )
        .order_by(EnvironmentRow.drift_due_at)
    )


def queue_due_checks(session: Session, settings: Settings, engine: str, now: datetime) -> list[str]:
    """Queue the drift checks that are due; returns their operation ids."""
    service = EnvironmentService(session, settings, engine)
    operations = OperationRepository(session)
    queued: list[str] = []
    for row in session.scalars(check_candidates(settings, now)).all():
        minutes = check_interval(row, settings)  # > 0: `check_candidates` has only those
        due = row.drift_due_at
        if due is None:
            # Checks just turned on (or their interval changed): the first is one interval away.
            row.drift_due_at = now + timedelta(minutes=minutes)
            continue
        if operations.active_for(row.id) is not None:
            continue  # busy: the check stays due and goes once the environment is free
        try:
            with session.begin_nested():
                claimed = session.execute(
                    update(EnvironmentRow)
                    .where(EnvironmentRow.id == row.id, EnvironmentRow.drift_due_at == due)
                    .values(drift_due_at=now + timedelta(minutes=minutes))
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                order = OperationOrder(
                    OperationKind.DRIFT_CHECK,
                    environment_config(row),
                    state_before=EnvironmentState(row.state),
                    fingerprint=request_fingerprint(
                        "DRIFT_CHECK", row.id, {"due": due.isoformat()}
                    ),
                )
                operation = service.enqueue(SYSTEM_PRINCIPAL, row, order)
        except ConflictError:
            continue  # an operation was requested meanwhile; the check stays due
        session.refresh(row)
        operations.append_event(
            operation.id,
            EngineEvent(
                EventType.DIAGNOSTIC,
                f"scheduled drift check of {row.tenant}/{row.name} (due {due.isoformat()}, "
                f"every {minutes} min)",
                severity="info",
                data={"reason": "drift_check_due", "dueAt": due.isoformat()},
            ),
        )
        log.info("schedules.drift_check_queued", tenant=row.tenant, name=row.name)
        queued.append(operation.id)
    session.flush()
    return queued


def remediate_drift(session: Session, settings: Settings, engine: str) -> list[str]:
    """Queue an update for each drifted environment that asks for remediation; returns their
    operation ids."""
    service = EnvironmentService(session, settings, engine)
    operations = OperationRepository(session)
    queued: list[str] = []
    drifted = session.scalars(
        select(EnvironmentRow).where(
            EnvironmentRow.drift_remediate.is_(True),
            EnvironmentRow.drift_status == DriftStatus.DRIFTED,
            EnvironmentRow.drift_operation_id.is_not(None),
            EnvironmentRow.state == EnvironmentState.READY,
        )
    ).all()
    for row in drifted:
        check_id = row.drift_operation_id
        if check_id is None or row.drift_remediated_for == check_id:
            continue
        if operations.active_for(row.id) is not None:
            continue
        try:
            with session.begin_nested():
                claimed = session.execute(
                    update(EnvironmentRow)
                    .where(
                        EnvironmentRow.id == row.id,
                        EnvironmentRow.drift_operation_id == check_id,
                        or_(
                            EnvironmentRow.drift_remediated_for.is_(None),
                            EnvironmentRow.drift_remediated_for != check_id,
                        ),
                    )
                    .values(drift_remediated_for=check_id)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                order = OperationOrder(
                    OperationKind.UPDATE,
                    environment_config(row),
                    state_before=EnvironmentState(row.state),
                    fingerprint=request_fingerprint("REMEDIATE", row.id, {"check": check_id}),
                    refresh_first=True,
                )
                operation = service.enqueue(SYSTEM_PRINCIPAL, row, order)
        except ConflictError:
            continue
        session.refresh(row)
        resources = ", ".join(str(change["resource"]) for change in row.drift_changes)
        operations.append_event(
            operation.id,
            EngineEvent(
                EventType.DIAGNOSTIC,
                f"drift check {check_id} found {len(row.drift_changes)} drifted resources "
                f"({resources}): the service restores the declared state",
                severity="info",
                data={"reason": "drift", "driftCheckId": check_id, "changes": row.drift_changes},
            ),
        )
        log.info("schedules.drift_remediation_queued", tenant=row.tenant, name=row.name)
        queued.append(operation.id)
    session.flush()
    return queued
