"""Registry rows → API models."""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.engines.base import OperationKind
from provisioner.registry.tables import (
    ApiKeyRow,
    AuditRow,
    EnvironmentRow,
    EnvironmentState,
    OperationEventRow,
    OperationRow,
    OperationState,
)
from provisioner.schemas import (
    ApiKeyPublic,
    AuditEntry,
    EnvironmentPublic,
    OperationError,
    OperationEventPublic,
    OperationPublic,
    Progress,
)
from stacks.config import PipelineSettings


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
    )


def environment_public(
    row: EnvironmentRow, last_operation: OperationRow | None, extras: Mapping[str, str]
) -> EnvironmentPublic:
    return EnvironmentPublic(
        tenant=row.tenant,
        name=row.name,
        state=EnvironmentState(row.state),
        engine=row.engine,
        region=row.region,
        config=PipelineSettings.model_validate(row.config),
        tags=dict(row.tags),
        outputs=dict(row.outputs or {}),
        failure_reason=row.failure_reason,
        last_operation=operation_public(last_operation) if last_operation else None,
        aws_endpoint_url=extras.get("awsEndpointUrl") if row.engine == "local" else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
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


def api_key_public(row: ApiKeyRow) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)


def audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry.model_validate(row, from_attributes=True)
