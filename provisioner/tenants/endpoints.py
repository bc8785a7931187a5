"""`/admin/tenants`: tenant quotas and usage (admin keys only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from provisioner.audit.middleware import audit_target
from provisioner.deps import AdminDep, SessionDep
from provisioner.errors import error_responses
from provisioner.tenants.schemas import Quota, TenantPublic
from provisioner.tenants.service import TenantService

router = APIRouter(prefix="/admin/tenants", tags=["tenants"])


@router.get("", response_model=list[TenantPublic], responses=error_responses(403))
def list_tenants(_admin: AdminDep, session: SessionDep) -> list[TenantPublic]:
    """Every tenant with a quota or environments: its quota beside its usage."""
    return TenantService(session).list()


@router.put(
    "/{tenant}",
    response_model=TenantPublic,
    responses=error_responses(400, 403, 422),
    summary="Set a tenant's quota (null fields: unlimited)",
)
def put_tenant_quota(
    tenant: str, body: Quota, request: Request, _admin: AdminDep, session: SessionDep
) -> TenantPublic:
    audit_target(request, tenant, tenant)
    return TenantService(session).put_quota(tenant, body)
