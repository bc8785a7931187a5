"""Approvals of updates and destroys on protected environments (docs/architecture.md §8).

Such an operation first runs as the engine's preview and then waits, AWAITING_APPROVAL, with
the preview attached (`hold_for_approval`); an admin other than the requester approves it (it
is queued again, now for real) or rejects it; one nobody approves expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from provisioner.auth.service import Principal
from provisioner.db import utcnow
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.environments import notifications
from provisioner.environments.lifecycle import LIFECYCLE, settle
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.service import environment_fingerprint
from provisioner.errors import ConflictError, NotFoundError, PermissionDeniedError
from provisioner.operations.models import OperationRow, OperationState
from provisioner.operations.repository import OperationRepository
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

_AWAITING = (OperationState.AWAITING_APPROVAL,)


def is_preview_run(operation: OperationRow) -> bool:
    """The operation's next (or current) run is the preview that precedes the approval."""
    return bool(operation.approval_required) and operation.approved_by is None


def hold_for_approval(
    session: Session,
    operation: OperationRow,
    changes: Mapping[str, int],
    steps: Sequence[Mapping[str, Any]],
) -> bool:
    """A preview run succeeded: the operation waits for an approval with its preview.

    A destroy removes every resource of the stack, whatever the plan of the current
    configuration says: its preview lists each resource as a delete.
    """
    steps = [dict(step) for step in steps]
    if operation.kind == OperationKind.DESTROY:
        steps = [{**step, "step": "delete"} for step in steps]
        changes = {"delete": len(steps)} if steps else dict(changes)
    preview = {"changes": dict(changes), "steps": steps}
    operations = OperationRepository(session)
    if not operations.transition(
        operation.id,
        from_states=(OperationState.RUNNING,),
        to_state=OperationState.AWAITING_APPROVAL,
        preview=preview,
        awaiting_since=utcnow(),
        runner_id=None,
        heartbeat_at=None,
    ):
        return False
    session.refresh(operation)
    operations.append_event(
        operation.id,
        EngineEvent(
            EventType.DIAGNOSTIC,
            f"{operation.kind} of a protected environment: awaiting an admin's approval",
            severity="info",
            data={"preview": preview},
        ),
    )
    notifications.publish(
        session,
        "operation.awaiting_approval",
        operation.tenant,
        {
            "operationId": operation.id,
            "kind": operation.kind,
            "tenant": operation.tenant,
            "name": operation.name,
            "requestedBy": operation.requested_by,
            "preview": preview,
        },
    )
    return True


class ApprovalService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.operations = OperationRepository(session)
        self.environments = EnvironmentRepository(session)

    def _awaiting(self, principal: Principal, operation_id: str, verb: str) -> OperationRow:
        row = self.operations.get(operation_id)
        if row is None or not principal.can_see(row.tenant):
            raise NotFoundError(f"operation {operation_id} not found")
        if not principal.is_admin:
            raise PermissionDeniedError(f"only admin API keys may {verb} operations")
        if row.state != OperationState.AWAITING_APPROVAL:
            raise ConflictError(f"operation {row.id} is not awaiting approval ({row.state})")
        return row

    def approve(self, principal: Principal, operation_id: str) -> OperationRow:
        row = self._awaiting(principal, operation_id, "approve")
        if row.requested_by == principal.key_id:
            raise PermissionDeniedError(
                "an operation must be approved by an admin key other than its requester's"
            )
        environment = self.environments.get_by_id(row.environment_id)
        if environment is None or environment_fingerprint(environment) != row.preview_fingerprint:
            raise ConflictError(
                f"environment {row.tenant}/{row.name} changed since operation {row.id} was "
                "previewed; reject it and request it again"
            )
        if not self.operations.transition(
            row.id,
            from_states=_AWAITING,
            to_state=OperationState.QUEUED,
            approved_by=principal.key_id,
            environment_state_before=environment.state,
        ):
            raise ConflictError(f"operation {row.id} is no longer awaiting approval")
        self.session.refresh(row)
        kind = OperationKind(row.kind)
        if kind == OperationKind.UPDATE:
            # The configuration it was previewed with becomes the environment's now.
            config = PipelineConfig.model_validate(row.request)
            environment.tags = dict(config.tags)
            environment.config = config.settings().model_dump(mode="json")
            pending = (row.result or {}).get("pendingTemplate")
            if pending:
                environment.template_name, environment.template_version = pending["template"]
                environment.config_overrides = pending["overrides"]
        during = LIFECYCLE[kind].during
        if during is not None:
            environment.state = during
            environment.failure_reason = None
        environment.updated_at = utcnow()
        self.operations.append_event(
            row.id,
            EngineEvent(EventType.DIAGNOSTIC, f"approved by {principal.key_id}", severity="info"),
        )
        self.session.flush()
        log.info("approvals.approved", operation_id=row.id, approved_by=principal.key_id)
        return row

    def reject(self, principal: Principal, operation_id: str) -> OperationRow:
        row = self._awaiting(principal, operation_id, "reject")
        if not settle(
            self.session,
            row,
            OperationState.CANCELLED,
            error_code="rejected",
            error=f"rejected by {principal.key_id}",
            from_states=_AWAITING,
        ):
            raise ConflictError(f"operation {row.id} is no longer awaiting approval")
        self.session.flush()
        return row


def expire_unapproved(session: Session, cutoff: datetime, ttl_minutes: int) -> list[str]:
    """Cancel operations that have awaited approval since before `cutoff`."""
    expired = []
    for row in OperationRepository(session).awaiting_since_before(cutoff):
        if settle(
            session,
            row,
            OperationState.CANCELLED,
            error_code="approval_expired",
            error=f"not approved within {ttl_minutes} minutes",
            from_states=_AWAITING,
        ):
            expired.append(row.id)
            log.info("approvals.expired", operation_id=row.id)
    return expired
