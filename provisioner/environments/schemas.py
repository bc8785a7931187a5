"""Environment requests and responses (docs/architecture.md §5), and rows → responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from provisioner.environments.models import DriftStatus, EnvironmentRow, EnvironmentState
from provisioner.environments.outdated import outdated_reasons
from provisioner.monitoring.models import EnvironmentHealthRow
from provisioner.monitoring.schemas import UNSAMPLED, HealthPublic, health_public
from provisioner.operations.models import OperationRow
from provisioner.operations.schemas import OperationPublic, operation_public
from provisioner.schemas import ApiModel
from provisioner.templates.schemas import TemplateRef
from stacks.config import (
    ENVIRONMENT_PATTERN,
    REGION_PATTERN,
    TENANT_PATTERN,
    PipelineSettings,
)

# Bounded so that `now + ttl` stays far inside every datetime range (a year).
MAX_TTL_MINUTES = 525_600


def _anchored(pattern: re.Pattern[str]) -> str:
    """A full-match pattern as JSON Schema writes it (ECMA `$` allows no trailing newline)."""
    return f"^(?:{pattern.pattern})$"


class DriftCheck(BaseModel):
    """Scheduled drift checks of one environment (docs/architecture.md §8)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    interval_minutes: int | None = Field(
        default=None,
        alias="intervalMinutes",
        ge=0,
        le=MAX_TTL_MINUTES,
        description="Minutes between checks; 0: never; null: the service's default "
        "(PROVISIONER_DRIFT_CHECK_MINUTES)",
    )
    remediate: bool = Field(
        default=False,
        description="Drift a check finds queues an update that restores the declared state",
    )


class ExpiryFields(BaseModel):
    """`expiresAt` or `ttlMinutes` (docs/architecture.md §8): one of them, or neither; and the
    other fields a PATCH may change without an operation."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    expires_at: AwareDatetime | None = Field(
        default=None,
        alias="expiresAt",
        description="When the service destroys the environment (ISO 8601 with an offset)",
    )
    ttl_minutes: int | None = Field(
        default=None,
        alias="ttlMinutes",
        ge=1,
        le=MAX_TTL_MINUTES,
        description="Destroy the environment this many minutes after the request",
    )
    protected: bool | None = Field(
        default=None,
        description="Updates and destroys wait for another admin's approval (admin keys only)",
    )
    drift_check: DriftCheck | None = Field(
        default=None,
        alias="driftCheck",
        description="Scheduled drift checks (a PATCH changes the fields it gives; null resets)",
    )

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # The registry keeps UTC: an instant near the end of year 9999 with a negative offset
        # has no UTC date.
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is beyond the last date that can be kept (9999-12-31 UTC)") from None

    @model_validator(mode="after")
    def _one_expiry(self) -> ExpiryFields:
        if self.expires_at is not None and self.ttl_minutes is not None:
            raise ValueError("give expiresAt or ttlMinutes, not both")
        return self


class EnvironmentCreate(ExpiryFields):
    # Patterns are documented here and enforced by PipelineConfig, whose errors say why.
    tenant: str = Field(
        description="Tenant id: [a-z][a-z0-9]{0,19}",
        examples=["acme"],
        json_schema_extra={"pattern": _anchored(TENANT_PATTERN)},
    )
    name: str = Field(
        description="Environment name: [a-z][a-z0-9-]{0,11}, not ending in '-'",
        examples=["dev"],
        json_schema_extra={"pattern": _anchored(ENVIRONMENT_PATTERN)},
    )
    region: str = Field(
        default="us-east-1",
        examples=["us-east-1"],
        json_schema_extra={"pattern": _anchored(REGION_PATTERN)},
    )
    template: str | None = Field(
        default=None,
        description='"name" (its latest version) or "name@version"; default: "default"',
        examples=["gold", "gold@2"],
        max_length=64,
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the template's config (the fields of PipelineSettings)",
        examples=[{"max_bad_row_ratio": 0.05}],
    )
    tags: dict[str, str] = Field(default_factory=dict)


# What a PATCH may change without an operation: it answers 200 with the environment.
METADATA_FIELDS = frozenset({"expires_at", "ttl_minutes", "protected", "drift_check"})


class EnvironmentUpdate(ExpiryFields):
    config: dict[str, Any] | None = Field(
        default=None,
        description="Fields of `config` to change (same names as in EnvironmentPublic.config)",
        examples=[{"max_bad_row_ratio": 0.05}],
    )
    tags: dict[str, str] | None = Field(default=None, description="Replaces the caller tags")
    template: str | None = Field(
        default=None,
        description='Move to another template or version: "name" (latest) or "name@version"',
        examples=["gold@3"],
        max_length=64,
    )

    @property
    def changes_infrastructure(self) -> bool:
        """Whether this PATCH needs an update operation: config or tags given, or nothing at all
        (an empty PATCH re-applies the configuration, as it always did)."""
        fields = self.model_fields_set
        return not fields or bool(fields - METADATA_FIELDS)

    @property
    def changes_expiry(self) -> bool:
        """`expiresAt` or `ttlMinutes` given (null clears the expiry)."""
        return bool(self.model_fields_set & {"expires_at", "ttl_minutes"})


class DriftChange(ApiModel):
    resource: str = Field(description="Physical name (local engine) or URN (pulumi)")
    type: str = Field(examples=["aws:sqs/queue:Queue"])
    kind: Literal["update", "create", "delete"] = Field(
        description="What restoring the declared state does: update it, re-create it (it is "
        "gone), delete it"
    )
    attributes: list[str] = Field(description="The attributes that differ (update)")


class DriftPublic(ApiModel):
    status: DriftStatus = Field(description="UNKNOWN: never checked, or applied since")
    checked_at: datetime | None = Field(description="When the last drift check finished")
    changes: list[DriftChange]
    operation_id: str | None = Field(description="The operation of the last drift check")


class EnvironmentPublic(ApiModel):
    tenant: str
    name: str
    state: EnvironmentState
    engine: str
    region: str
    template: TemplateRef
    config: PipelineSettings = Field(description="Effective: the template's, then the overrides")
    config_overrides: dict[str, Any] = Field(description="The environment's own part of config")
    code_version: str | None = Field(
        description="The code version its last successful create/update applied"
    )
    outdated: bool
    outdated_reasons: list[str]
    tags: dict[str, str]
    outputs: dict[str, str]
    failure_reason: str | None = None
    last_operation: OperationPublic | None
    aws_endpoint_url: str | None = Field(
        default=None, description="Local engine only: the AWS emulator's endpoint URL"
    )
    expires_at: datetime | None = None
    protected: bool = False
    drift_check: DriftCheck
    drift: DriftPublic
    health: HealthPublic = Field(
        default=UNSAMPLED,
        description="The data plane's health, from the last sample (docs/architecture.md §8)",
    )
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FleetView:
    """What deciding `outdated` needs besides the row: one look-up for a whole page."""

    latest_versions: Mapping[str, int]
    code_version: str


def environment_public(
    row: EnvironmentRow,
    last_operation: OperationRow | None,
    extras: Mapping[str, str],
    fleet: FleetView,
    health: EnvironmentHealthRow | None = None,
) -> EnvironmentPublic:
    reasons = outdated_reasons(row, fleet.latest_versions, fleet.code_version)
    return EnvironmentPublic(
        tenant=row.tenant,
        name=row.name,
        state=EnvironmentState(row.state),
        engine=row.engine,
        region=row.region,
        template=TemplateRef(name=row.template_name, version=row.template_version),
        config=PipelineSettings.model_validate(row.config),
        config_overrides=dict(row.config_overrides or {}),
        code_version=row.code_version,
        outdated=bool(reasons),
        outdated_reasons=reasons,
        tags=dict(row.tags),
        outputs=dict(row.outputs or {}),
        failure_reason=row.failure_reason,
        last_operation=operation_public(last_operation) if last_operation else None,
        aws_endpoint_url=extras.get("awsEndpointUrl") if row.engine == "local" else None,
        expires_at=row.expires_at,
        protected=bool(row.protected),
        drift_check=DriftCheck(
            interval_minutes=row.drift_check_minutes, remediate=bool(row.drift_remediate)
        ),
        drift=DriftPublic(
            status=DriftStatus(row.drift_status or DriftStatus.UNKNOWN),
            checked_at=row.drift_checked_at,
            changes=[DriftChange.model_validate(change) for change in row.drift_changes or []],
            operation_id=row.drift_operation_id,
        ),
        health=health_public(health),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
