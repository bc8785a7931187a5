"""Tenant quotas: setting them, and checking a request against them inside its transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from provisioner.db import utcnow
from provisioner.errors import QuotaExceededError, ValidationFailed
from provisioner.tenants.models import TenantQuotaRow
from provisioner.tenants.repository import TenantRepository
from provisioner.tenants.schemas import Quota, TenantPublic, Usage, quota_public
from stacks.config import TENANT_PATTERN


class TenantService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.tenants = TenantRepository(session)

    def put_quota(self, tenant: str, quota: Quota) -> TenantPublic:
        if not TENANT_PATTERN.fullmatch(tenant):
            raise ValidationFailed(
                [
                    {
                        "loc": ["path", "tenant"],
                        "msg": "must match [a-z][a-z0-9]{0,19}",
                        "type": "value_error",
                    }
                ]
            )
        row = self.tenants.lock(tenant)
        if row is None:
            row = TenantQuotaRow(tenant=tenant)
            self.tenants.add(row)
        row.max_environments = quota.max_environments
        row.allowed_regions = quota.allowed_regions
        row.max_memory_mb = quota.max_memory_mb
        row.updated_at = utcnow()
        self.session.flush()
        usage = self.tenants.environments_in_use(tenant).get(tenant, 0)
        return TenantPublic(tenant=tenant, quota=quota_public(row), usage=Usage(environments=usage))

    def list(self) -> list[TenantPublic]:
        """Every tenant with a quota or an environment that counts."""
        quotas = {row.tenant: row for row in self.tenants.all()}
        usage = self.tenants.environments_in_use()
        return [
            TenantPublic(
                tenant=tenant,
                quota=quota_public(quotas.get(tenant)),
                usage=Usage(environments=usage.get(tenant, 0)),
            )
            for tenant in sorted(quotas.keys() | usage.keys())
        ]

    def check(self, tenant: str, *, new_environment: bool, region: str, memory_mb: int) -> None:
        """Raise `QuotaExceededError` if the request would exceed the tenant's quota.

        Call it in the request's write transaction, before writing: the quota row stays locked
        until the transaction ends, so concurrent creates of one tenant count one after another
        and never pass the limit together.
        """
        quota = self.tenants.lock(tenant)
        if quota is None:
            return
        if quota.allowed_regions is not None and region not in quota.allowed_regions:
            allowed = ", ".join(quota.allowed_regions) or "none"
            raise QuotaExceededError(
                f"region {region} is not allowed for tenant {tenant} (allowed: {allowed})"
            )
        if quota.max_memory_mb is not None and memory_mb > quota.max_memory_mb:
            raise QuotaExceededError(
                f"memory_mb {memory_mb} exceeds tenant {tenant}'s maxMemoryMb {quota.max_memory_mb}"
            )
        if new_environment and quota.max_environments is not None:
            used = self.tenants.environments_in_use(tenant).get(tenant, 0)
            if used + 1 > quota.max_environments:
                raise QuotaExceededError(
                    f"tenant {tenant} has {used} environments; maxEnvironments is "
                    f"{quota.max_environments}"
                )
