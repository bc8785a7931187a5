"""`/fleet`: the fleet's counts now, and sampled over time. Tenant keys see their own tenant's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from provisioner.auth.service import Principal
from provisioner.deps import AppStateDep, PrincipalDep, SessionDep
from provisioner.errors import NotFoundError, error_responses
from provisioner.fleet.schemas import FleetHistory, FleetSummary
from provisioner.fleet.service import FleetService
from stacks.config import TENANT_PATTERN

router = APIRouter(prefix="/fleet", tags=["fleet"])

TenantFilter = Annotated[
    str | None,
    Query(
        pattern=f"^(?:{TENANT_PATTERN.pattern})$",
        description="Only this tenant (tenant keys: their own, the default)",
    ),
]
# A week: the longest history a chart asks for (samples may be kept longer).
MAX_HISTORY_MINUTES = 7 * 24 * 60


def _visible_tenant(principal: Principal, tenant: str | None) -> str | None:
    """The tenant to count: a tenant key's own; another tenant's fleet is a missing one."""
    if principal.tenant is None:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise NotFoundError(f"tenant {tenant} not found")
    return principal.tenant


@router.get("", response_model=FleetSummary, responses=error_responses(404, 422))
def fleet_summary(
    principal: PrincipalDep, session: SessionDep, services: AppStateDep, tenant: TenantFilter = None
) -> FleetSummary:
    service = FleetService(session, services.code_version)
    return service.summary(_visible_tenant(principal, tenant), services.scheduler.clock())


@router.get(
    "/history",
    response_model=FleetHistory,
    responses=error_responses(404, 422),
    summary="Sampled counts (environments, failing, drifted, outdated), oldest first",
)
def fleet_history(
    principal: PrincipalDep,
    session: SessionDep,
    services: AppStateDep,
    tenant: TenantFilter = None,
    minutes: Annotated[int, Query(ge=1, le=MAX_HISTORY_MINUTES)] = 360,
) -> FleetHistory:
    service = FleetService(session, services.code_version)
    return service.history(
        _visible_tenant(principal, tenant),
        services.scheduler.clock(),
        minutes,
        services.settings.fleet_sample_interval_s,
    )
