"""Template requests and responses (docs/architecture.md §7), and rows → responses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from provisioner.schemas import ApiModel, PlainLines
from provisioner.templates.models import TemplateRow, TemplateVersionRow
from stacks.config import ENVIRONMENT_PATTERN

_CONFIG_DESCRIPTION = "Pipeline config fields (the same names as an environment's `config`)"


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The pattern is documented here and enforced (full match) by the service.
    name: str = Field(
        description="Template name: the environment-name rule, [a-z][a-z0-9-]{0,11}",
        examples=["gold"],
        json_schema_extra={"pattern": ENVIRONMENT_PATTERN.pattern},
    )
    description: PlainLines | None = Field(default=None, max_length=1000)
    config: dict[str, Any] = Field(
        default_factory=dict, description=_CONFIG_DESCRIPTION, examples=[{"memory_mb": 1024}]
    )


class TemplateVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(
        default_factory=dict, description=_CONFIG_DESCRIPTION, examples=[{"memory_mb": 2048}]
    )
    description: PlainLines | None = Field(default=None, max_length=1000)


class TemplateRef(ApiModel):
    name: str
    version: int


class TemplateVersionPublic(ApiModel):
    name: str
    version: int
    description: str | None
    config: dict[str, Any]
    created_by: str
    created_at: datetime


class TemplateSummary(ApiModel):
    name: str
    description: str | None
    latest_version: int
    created_by: str
    created_at: datetime


class TemplatePublic(TemplateSummary):
    versions: list[TemplateVersionPublic]


def template_version_public(row: TemplateVersionRow) -> TemplateVersionPublic:
    return TemplateVersionPublic(
        name=row.template_name,
        version=row.version,
        description=row.description,
        config=dict(row.config),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def template_summary(row: TemplateRow, latest_version: int) -> TemplateSummary:
    return TemplateSummary(
        name=row.name,
        description=row.description,
        latest_version=latest_version,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def template_public(row: TemplateRow, versions: Sequence[TemplateVersionRow]) -> TemplatePublic:
    return TemplatePublic(
        **template_summary(row, max(v.version for v in versions)).model_dump(),
        versions=[template_version_public(v) for v in versions],
    )
