"""Environment requests and responses (docs/architecture.md §5), and rows → responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.outdated import outdated_reasons
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


def _anchored(pattern: re.Pattern[str]) -> str:
    """A full-match pattern as JSON Schema writes it (ECMA `$` allows no trailing newline)."""
    return f"^(?:{pattern.pattern})$"


class EnvironmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class EnvironmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
