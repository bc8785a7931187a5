"""Request and response models of the HTTP API (DESIGN §5). JSON uses camelCase names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from provisioner.auth import SCOPE_RULE, is_valid_scope
from provisioner.engines.base import OperationKind
from provisioner.registry.tables import EnvironmentState, OperationState
from stacks.config import (
    ENVIRONMENT_PATTERN,
    REGION_PATTERN,
    TENANT_PATTERN,
    PipelineSettings,
)

T = TypeVar("T")


def _anchored(pattern: re.Pattern[str]) -> str:
    """A full-match pattern as JSON Schema writes it (ECMA `$` allows no trailing newline)."""
    return f"^(?:{pattern.pattern})$"


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code")
    detail: str = Field(description="What was wrong, for a human")


class ValidationErrorBody(ErrorBody):
    errors: list[dict[str, Any]] = Field(description="One entry per invalid field")


class Page(ApiModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- environments ---


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
    config: PipelineSettings = Field(default_factory=PipelineSettings)
    tags: dict[str, str] = Field(default_factory=dict)


class EnvironmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(
        default=None,
        description="Fields of `config` to change (same names as in EnvironmentPublic.config)",
        examples=[{"max_bad_row_ratio": 0.05}],
    )
    tags: dict[str, str] | None = Field(default=None, description="Replaces the caller tags")


class Progress(ApiModel):
    done: int = Field(description="Resources finished")
    total: int = Field(description="Resources expected (0 while unknown)")


class OperationError(ApiModel):
    code: str
    message: str


class OperationPublic(ApiModel):
    id: str
    kind: OperationKind
    state: OperationState
    tenant: str
    name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: OperationError | None
    progress: Progress
    cancel_requested: bool
    requested_by: str
    changes: dict[str, int] = Field(
        default_factory=dict, description="Change counts (preview plan, refresh drift, up summary)"
    )


class EnvironmentPublic(ApiModel):
    tenant: str
    name: str
    state: EnvironmentState
    engine: str
    region: str
    config: PipelineSettings
    tags: dict[str, str]
    outputs: dict[str, str]
    failure_reason: str | None = None
    last_operation: OperationPublic | None
    aws_endpoint_url: str | None = Field(
        default=None, description="Local engine only: the AWS emulator's endpoint URL"
    )
    created_at: datetime
    updated_at: datetime


class OperationEventPublic(ApiModel):
    id: int = Field(description="Increases by one within the operation")
    operation_id: str
    type: str
    message: str
    resource: str | None
    resource_type: str | None
    step: str | None
    severity: str | None
    data: dict[str, Any]
    progress: Progress
    created_at: datetime


# --- API keys and audit ---

Scope = str


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description='"admin" or "tenant:<tenant id>"', examples=["tenant:acme"])
    description: str = Field(default="", max_length=200)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not is_valid_scope(value):
            raise ValueError(SCOPE_RULE)
        return value


class ApiKeyPublic(ApiModel):
    id: str
    scope: Scope
    prefix: str = Field(description="First characters of the key, to recognise it")
    description: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret key. Shown once; store it now.")


class AuditEntry(ApiModel):
    id: int
    at: datetime
    actor: str
    scope: str | None
    tenant: str | None
    action: str
    target: str | None
    status_code: int
    result: str
    detail: str | None


class Summary(ApiModel):
    environments_by_state: dict[str, int]
    active_operations_by_kind: dict[str, int]
    operations_queued: int
    operations_running: int
    engine: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, dict[str, Any]]


# --- the data plane: files and dead letters ---


class FileError(BaseModel):
    stage: str
    type: str
    message: str


class FileRecord(ApiModel):
    """A file's status item (DESIGN §3 field names)."""

    file_id: str
    bucket: str
    object_key: str
    version_id: str
    status: str
    stage: str | None = None
    attempt: int | None = None
    received_at: str | None = None
    updated_at: str | None = None
    expiration_time: int | None = Field(default=None, description="Epoch seconds (TTL)")
    row_count: int | None = None
    rejected_rows: int | None = None
    symbol_count: int | None = None
    result_key: str | None = None
    error: FileError | None = None
    last_error: FileError | None = Field(
        default=None, description="The error of the attempt before a retry"
    )
    symbols: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Per-symbol results (single-file view, when stored)"
    )


class FilePagePublic(ApiModel):
    items: list[FileRecord]
    counts: dict[str, int] = Field(description="Files by status (all, before `status` filter)")
    total: int = Field(description="Files matching the filters")
    limit: int
    offset: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
    truncated: bool = Field(description="The table holds more files than one listing scans")


class DeadLetterPublic(ApiModel):
    message_id: str
    file_id: str | None
    object_key: str | None
    stage: str
    reason: str
    sent_at: str | None = Field(description="Epoch milliseconds, as SQS reports it")
    receive_count: int


class DeadLetterQueuePublic(ApiModel):
    name: str
    depth: int
    messages: list[DeadLetterPublic]


class DeadLetterReport(ApiModel):
    queues: list[DeadLetterQueuePublic]


class RedriveResult(ApiModel):
    moved: int
