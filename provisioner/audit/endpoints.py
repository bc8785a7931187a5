"""`/admin/audit` and `/admin/summary`: what happened, and what is there now. Admin keys only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from provisioner.audit.repository import AuditRepository
from provisioner.audit.schemas import AuditEntry, Summary, audit_entry
from provisioner.deps import AdminDep, AppStateDep, Limit, Offset, SessionDep
from provisioner.environments.repository import EnvironmentRepository
from provisioner.errors import error_responses
from provisioner.operations.models import OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.schemas import Page

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/audit", response_model=Page[AuditEntry], responses=error_responses(403))
def list_audit(
    _principal: AdminDep,
    session: SessionDep,
    tenant: Annotated[str | None, Query()] = None,
    actor: Annotated[str | None, Query(description="API key id")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditEntry]:
    rows, total = AuditRepository(session).list(
        tenant=tenant, actor=actor, limit=limit, offset=offset
    )
    return Page(items=[audit_entry(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/summary", response_model=Summary, responses=error_responses(403))
def summary(_principal: AdminDep, session: SessionDep, services: AppStateDep) -> Summary:
    operations = OperationRepository(session)
    return Summary(
        environments_by_state=EnvironmentRepository(session).count_by_state(),
        active_operations_by_kind=operations.count_active_by_kind(),
        operations_queued=operations.count_in_state(OperationState.QUEUED),
        operations_running=operations.count_in_state(OperationState.RUNNING),
        engine=services.engine_name,
        code_version=services.code_version,
    )
