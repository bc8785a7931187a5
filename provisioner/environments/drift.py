"""An environment's drift status (docs/architecture.md §8): what its last drift check found.

A drift check (a refresh) reports each resource that is not as the environment declares it
(`engines.base.ResourceDrift`); `record_drift` keeps the verdict on the environment, in the
transaction that settles the check, and writes `environment.drifted` to the webhooks' outbox
in that same transaction when it finds drift it had not reported yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.orm import Session

from provisioner.db import utcnow
from provisioner.environments import notifications
from provisioner.environments.models import DriftStatus, EnvironmentRow
from provisioner.operations.models import OperationRow

log = structlog.get_logger(__name__)


def drift_changes(found: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The check's findings as the environment JSON's `drift.changes` items, in a stable order."""
    changes = [
        {
            "resource": str(item["resource"]),
            "type": str(item["type"]),
            "kind": str(item["kind"]),
            "attributes": sorted(str(name) for name in item.get("attributes") or ()),
        }
        for item in found
    ]
    return sorted(changes, key=lambda change: (change["type"], change["resource"]))


def record_drift(
    session: Session,
    environment: EnvironmentRow,
    check: OperationRow,
    found: Sequence[Mapping[str, Any]],
) -> DriftStatus:
    """Keep a succeeded drift check's verdict on its environment."""
    changes = drift_changes(found)
    status = DriftStatus.DRIFTED if changes else DriftStatus.IN_SYNC
    # Reported once per distinct drift: checks that find the same again stay quiet.
    newly = status == DriftStatus.DRIFTED and (
        environment.drift_status != DriftStatus.DRIFTED or environment.drift_changes != changes
    )
    environment.drift_status = status
    environment.drift_checked_at = utcnow()
    environment.drift_changes = changes
    environment.drift_operation_id = check.id
    if newly:
        notifications.publish(
            session,
            "environment.drifted",
            environment.tenant,
            {
                "tenant": environment.tenant,
                "name": environment.name,
                "changes": changes,
                "operationId": check.id,
            },
        )
    log.info(
        "environments.drift_checked",
        tenant=environment.tenant,
        name=environment.name,
        status=status,
        drifted_resources=len(changes),
    )
    return status


def forget_drift(environment: EnvironmentRow) -> None:
    """The environment's resources were just (re)applied: the last verdict no longer holds.

    With scheduled checks on, the next one is due now: it finds whether the apply restored
    everything (a remediation) or what it left."""
    environment.drift_status = DriftStatus.UNKNOWN
    environment.drift_changes = []
    environment.drift_due_at = utcnow()
