"""`/admin/api-keys`: create, list and revoke API keys. Admin keys only."""

from __future__ import annotations

from fastapi import APIRouter, Request

from provisioner.audit.middleware import audit_target
from provisioner.auth.repository import ApiKeyRepository
from provisioner.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, api_key_public
from provisioner.auth.service import ApiKeys
from provisioner.deps import AdminDep, AppStateDep, Limit, Offset, SessionDep
from provisioner.errors import error_responses

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=error_responses(400, 403, 422),
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


@router.get("/api-keys", response_model=list[ApiKeyPublic], responses=error_responses(403))
def list_api_keys(
    _principal: AdminDep, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> list[ApiKeyPublic]:
    rows = ApiKeyRepository(session).list(limit=limit, offset=offset)
    return [api_key_public(row) for row in rows]


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyPublic,
    responses=error_responses(403, 404, 409),
    summary="Revoke an API key (not the last active admin key: 409)",
)
def revoke_api_key(
    key_id: str,
    request: Request,
    _principal: AdminDep,
    session: SessionDep,
    services: AppStateDep,
) -> ApiKeyPublic:
    audit_target(request, None, key_id)
    row = ApiKeys(ApiKeyRepository(session)).revoke(key_id)
    session.commit()
    # Refused by this replica from the next request on; by others within RecentKeys.ttl_s.
    services.recent_keys.forget_all()
    return api_key_public(row)
