"""Operation and event responses (docs/architecture.md §5), and rows → responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request, Response
from pydantic import Field

from provisioner.engines.base import OperationKind
from provisioner.operations.models import OperationEventRow, OperationRow, OperationState
from provisioner.schemas import ApiModel


class Progress(ApiModel):
    done: int = Field(description="Resources finished")
    total: int = Field(description="Resources expected (0 while unknown)")


class OperationError(ApiModel):
    code: str
    message: str


class OperationPublic(ApiModel):
    id: str
    kind: OperationKind
    state: OperationState
    tenant: str
    name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: OperationError | None
    progress: Progress
    cancel_requested: bool
    requested_by: str
    changes: dict[str, int] = Field(
        default_factory=dict, description="Change counts (preview plan, refresh drift, up summary)"
    )
    preview: dict[str, Any] | None = Field(
        default=None,
        description='Protected environments: {"changes": {step: count}, "steps": [...]}',
    )
    approved_by: str | None = None
    rollout_id: str | None = Field(default=None, description="The rollout that requested it")


class OperationEventPublic(ApiModel):
    id: int = Field(description="Increases by one within the operation")
    operation_id: str
    type: str
    message: str
    resource: str | None
    resource_type: str | None
    step: str | None
    severity: str | None
    data: dict[str, Any]
    progress: Progress
    created_at: datetime


def operation_public(row: OperationRow) -> OperationPublic:
    error = (
        OperationError(code=row.error_code or "error", message=row.error)
        if row.error is not None
        else None
    )
    return OperationPublic(
        id=row.id,
        kind=OperationKind(row.kind),
        state=OperationState(row.state),
        tenant=row.tenant,
        name=row.name,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=error,
        progress=Progress(done=row.progress_done, total=row.progress_total),
        cancel_requested=row.cancel_requested,
        requested_by=row.requested_by,
        changes=dict((row.result or {}).get("changes") or {}),
        preview=row.preview,
        approved_by=row.approved_by,
        rollout_id=row.rollout_id,
    )


def event_public(row: OperationEventRow) -> OperationEventPublic:
    return OperationEventPublic(
        id=row.seq,
        operation_id=row.operation_id,
        type=row.type,
        message=row.message,
        resource=row.resource,
        resource_type=row.resource_type,
        step=row.step,
        severity=row.severity,
        data=dict(row.data or {}),
        progress=Progress(done=row.progress_done, total=row.progress_total),
        created_at=row.created_at,
    )


def accepted(operation: OperationRow, request: Request, response: Response) -> OperationPublic:
    """A 202 for a queued operation, with a Location header pointing at it."""
    response.status_code = 202
    response.headers["Location"] = str(request.url_for("get_operation", operation_id=operation.id))
    return operation_public(operation)
