"""Fleet responses (docs/architecture.md §7–§8)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from provisioner.schemas import ApiModel


class TemplateVersionCount(ApiModel):
    template: str
    version: int
    latest_version: int
    environments: int
    outdated: int


class CodeVersionCount(ApiModel):
    code_version: str | None = Field(description="None: never applied (no successful create)")
    environments: int
    current: bool = Field(description="The service's own code version")


class FleetSummary(ApiModel):
    tenant: str | None = Field(description="The tenant counted, or None for the whole fleet")
    code_version: str = Field(description="The service's code version")
    generated_at: datetime
    total: int = Field(description="Environments that are not DESTROYED")
    by_state: dict[str, int] = Field(description="Every environment by state, DESTROYED too")
    outdated: int
    drifted: int = Field(description='Environments whose `drift.status` is "DRIFTED"')
    failing: int = Field(description="FAILED, or a `health.status` other than OK/UNKNOWN")
    drift: dict[str, int] = Field(description="By `drift.status` (UNKNOWN when not checked)")
    health: dict[str, int] = Field(description="By `health.status` (UNKNOWN when not known)")
    by_template: list[TemplateVersionCount]
    by_code_version: list[CodeVersionCount]


class FleetSamplePublic(ApiModel):
    at: datetime = Field(description="Start of the sampling period")
    environments: int
    failing: int
    drifted: int
    outdated: int


class FleetHistory(ApiModel):
    tenant: str | None
    minutes: int
    interval_seconds: float = Field(description="One sample per this many seconds")
    samples: list[FleetSamplePublic]
