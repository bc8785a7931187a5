"""Rollout requests and responses (docs/architecture.md §7), and rows → responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from provisioner.rollouts.models import (
    RolloutAction,
    RolloutEventRow,
    RolloutRow,
    RolloutState,
    RolloutTargetRow,
    TargetState,
)
from provisioner.schemas import ApiModel
from stacks.config import ENVIRONMENT_PATTERN, TENANT_PATTERN

# A snapshot holds at most this many environments: a larger fleet is several rollouts.
MAX_TARGETS: Final = 1000


class _Input(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _environment_name(value: str) -> str:
    if not ENVIRONMENT_PATTERN.fullmatch(value):
        raise ValueError("must match [a-z][a-z0-9-]{0,11} and not end in '-'")
    return value


class Selector(_Input):
    """Which environments the rollout takes (every criterion given must hold). DESTROYED
    environments are never selected."""

    tenants: list[str] | None = Field(default=None, max_length=100, examples=[["acme"]])
    template: str | None = Field(
        default=None,
        max_length=64,
        description='Environments on this template ("gold") or template version ("gold@1")',
        examples=["gold"],
    )
    outdated: bool | None = Field(
        default=None, description="Only outdated (true) or only current (false) environments"
    )
    tags: dict[str, str] | None = Field(
        default=None, max_length=50, description="Environments carrying all these tags"
    )
    environments: list[str] | None = Field(
        default=None,
        max_length=MAX_TARGETS,
        description='Exactly these environments, as "tenant/name"',
        examples=[["acme/dev"]],
    )

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: list[str] | None) -> list[str] | None:
        for tenant in value or []:
            if not TENANT_PATTERN.fullmatch(tenant):
                raise ValueError(f"{tenant!r} is not a tenant id ([a-z][a-z0-9]{{0,19}})")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name, _, version = value.partition("@")
        _environment_name(name)
        if "@" in value and not (version.isdigit() and version[0] != "0" and len(version) < 10):
            raise ValueError('must be "<template name>" or "<template name>@<version>"')
        return value

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: list[str] | None) -> list[str] | None:
        for reference in value or []:
            tenant, _, name = reference.partition("/")
            if not TENANT_PATTERN.fullmatch(tenant) or not ENVIRONMENT_PATTERN.fullmatch(name):
                raise ValueError(f'{reference!r} is not "tenant/name"')
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if not self.model_fields_set or all(
            getattr(self, field) is None for field in self.model_fields_set
        ):
            raise ValueError("name at least one of tenants, template, outdated, tags, environments")
        return self


class Strategy(_Input):
    canary: int = Field(
        default=1, ge=0, le=MAX_TARGETS, description="Targets updated first, before any other"
    )
    max_concurrent: int = Field(default=1, ge=1, le=100, description="Targets at a time")
    max_failures: int = Field(
        default=0, ge=0, le=MAX_TARGETS, description="Failed targets tolerated; one more halts"
    )
    verify: bool = Field(
        default=False, description="A target succeeds only if its data-plane smoke test passes"
    )
    verify_timeout_seconds: float = Field(default=120, gt=0, le=3600)
    force: bool = Field(
        default=False, description="Also run targets already on the goal version and code"
    )


class RolloutCreate(_Input):
    selector: Selector
    action: RolloutAction = RolloutAction.UPDATE
    template_version: int | None = Field(
        default=None,
        ge=1,
        le=999_999_999,
        description="update: the version of each target's template to move to (default: latest)",
    )
    strategy: Strategy = Field(default_factory=Strategy)


class TargetTemplate(ApiModel):
    name: str
    version: int | None


class TargetPublic(ApiModel):
    tenant: str
    name: str
    position: int
    wave: int = Field(description="0: the canaries; then batches of maxConcurrent, in order")
    canary: bool
    state: TargetState
    template: TargetTemplate = Field(description="Where an update takes it (version null: refresh)")
    from_template: TargetTemplate
    from_code_version: str | None
    operation_id: str | None
    attempts: int
    reason: str | None
    verification: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


class RolloutSummary(ApiModel):
    id: str
    tenant: str | None
    state: RolloutState
    action: RolloutAction
    selector: dict[str, Any]
    strategy: dict[str, Any]
    template_version: int | None
    code_version: str
    reason: str | None
    counts: dict[str, int] = Field(description="Targets per state")
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class RolloutPublic(RolloutSummary):
    targets: list[TargetPublic]


class RolloutEventPublic(ApiModel):
    id: int = Field(description="Increases by one within the rollout")
    rollout_id: str
    type: str
    message: str
    data: dict[str, Any]
    created_at: datetime


def target_public(row: RolloutTargetRow) -> TargetPublic:
    return TargetPublic(
        tenant=row.tenant,
        name=row.name,
        position=row.position,
        wave=row.wave,
        canary=row.canary,
        state=TargetState(row.state),
        template=TargetTemplate(name=row.template_name, version=row.template_version),
        from_template=TargetTemplate(name=row.template_name, version=row.from_template_version),
        from_code_version=row.from_code_version,
        operation_id=row.operation_id,
        attempts=row.attempts,
        reason=row.reason,
        verification=row.verification,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def rollout_summary(row: RolloutRow, counts: Mapping[str, int]) -> RolloutSummary:
    return RolloutSummary(
        id=row.id,
        tenant=row.tenant,
        state=RolloutState(row.state),
        action=RolloutAction(row.action),
        selector=dict(row.selector),
        strategy=dict(row.strategy),
        template_version=row.template_version,
        code_version=row.code_version,
        reason=row.reason,
        counts={state: counts.get(state, 0) for state in TargetState},
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def rollout_public(row: RolloutRow, targets: Sequence[RolloutTargetRow]) -> RolloutPublic:
    counts: dict[str, int] = {}
    for target in targets:
        counts[target.state] = counts.get(target.state, 0) + 1
    return RolloutPublic(
        **rollout_summary(row, counts).model_dump(),
        targets=[target_public(target) for target in targets],
    )


def event_public(row: RolloutEventRow) -> RolloutEventPublic:
    return RolloutEventPublic(
        id=row.seq,
        rollout_id=row.rollout_id,
        type=row.type,
        message=row.message,
        data=dict(row.data or {}),
        created_at=row.created_at,
    )
