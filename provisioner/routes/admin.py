"""`/admin`: API keys, the audit log and a summary. Admin keys only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from provisioner.auth import ApiKeys
from provisioner.deps import AdminDep, ServicesDep, SessionDep
from provisioner.registry.api_keys import ApiKeyRepository
from provisioner.registry.audit import AuditRepository
from provisioner.registry.environments import EnvironmentRepository
from provisioner.registry.operations import OperationRepository
from provisioner.registry.tables import OperationState
from provisioner.routes.responses import Limit, Offset, audit_target, errors
from provisioner.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    AuditEntry,
    Page,
    Summary,
)
from provisioner.views import api_key_public, audit_entry

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=errors(400, 403, 422),
    summary="Create an API key (the key is returned once)",
)
def create_api_key(
    body: ApiKeyCreate, request: Request, principal: AdminDep, session: SessionDep
) -> ApiKeyCreated:
    row, key = ApiKeys(ApiKeyRepository(session)).create(
        body.scope, body.description, created_by=principal.key_id
    )
    session.commit()
    audit_target(
        request, body.scope.removeprefix("tenant:") if body.scope != "admin" else None, row.id
    )
    return ApiKeyCreated(**api_key_public(row).model_dump(), key=key)


@router.get("/api-keys", response_model=list[ApiKeyPublic], responses=errors(403))
def list_api_keys(
    _principal: AdminDep, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> list[ApiKeyPublic]:
    rows = ApiKeyRepository(session).list(limit=limit, offset=offset)
    return [api_key_public(row) for row in rows]


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyPublic,
    responses=errors(403, 404, 409),
    summary="Revoke an API key (not the last active admin key: 409)",
)
def revoke_api_key(
    key_id: str, request: Request, _principal: AdminDep, session: SessionDep
) -> ApiKeyPublic:
    audit_target(request, None, key_id)
    row = ApiKeys(ApiKeyRepository(session)).revoke(key_id)
    session.commit()
    return api_key_public(row)


@router.get("/audit", response_model=Page[AuditEntry], responses=errors(403))
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


@router.get("/summary", response_model=Summary, responses=errors(403))
def summary(_principal: AdminDep, session: SessionDep, services: ServicesDep) -> Summary:
    operations = OperationRepository(session)
    return Summary(
        environments_by_state=EnvironmentRepository(session).count_by_state(),
        active_operations_by_kind=operations.count_active_by_kind(),
        operations_queued=operations.count_in_state(OperationState.QUEUED),
        operations_running=operations.count_in_state(OperationState.RUNNING),
        engine=services.engine_name,
    )
