"""Tenant quota requests and responses (docs/architecture.md §8)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from provisioner.schemas import ApiModel
from provisioner.tenants.models import TenantQuotaRow
from stacks.config import REGION_PATTERN


class Quota(ApiModel):
    """A tenant's limits; null (or absent) means unlimited."""

    model_config = ConfigDict(extra="forbid")

    max_environments: int | None = Field(
        default=None, ge=0, le=100_000, description="Environments not DESTROYED"
    )
    allowed_regions: list[str] | None = Field(default=None, max_length=64)
    max_memory_mb: int | None = Field(
        default=None, ge=128, le=10240, description="Upper bound of config.memory_mb"
    )

    @field_validator("allowed_regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for region in value:
            if not REGION_PATTERN.fullmatch(region):
                raise ValueError(f"{region!r} is not an AWS region name")
        return sorted(set(value))


class Usage(ApiModel):
    environments: int


class TenantPublic(ApiModel):
    tenant: str
    quota: Quota
    usage: Usage


def quota_public(row: TenantQuotaRow | None) -> Quota:
    if row is None:
        return Quota()
    return Quota(
        max_environments=row.max_environments,
        allowed_regions=list(row.allowed_regions) if row.allowed_regions is not None else None,
        max_memory_mb=row.max_memory_mb,
    )
