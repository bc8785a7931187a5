"""ORM tables of operations and their events. States are stored as their string values."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, revision_column, utcnow


class OperationState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    # An update or destroy of a protected environment whose preview waits for an admin.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"


# An operation awaiting approval holds its environment like a queued one (one active each).
ACTIVE_OPERATION_STATES = (
    OperationState.QUEUED,
    OperationState.RUNNING,
    OperationState.AWAITING_APPROVAL,
)
FINAL_OPERATION_STATES = (
    OperationState.SUCCEEDED,
    OperationState.FAILED,
    OperationState.CANCELLED,
    OperationState.INTERRUPTED,
)


class OperationRow(Base):
    __tablename__ = "operations"
    __table_args__ = (
        # At most one active operation per environment, enforced by the database itself so
        # that concurrent requests (and replicas) cannot both get one.
        Index(
            "uq_operation_active_per_environment",
            "environment_id",
            unique=True,
            sqlite_where=text("state IN ('QUEUED', 'RUNNING', 'AWAITING_APPROVAL')"),
            postgresql_where=text("state IN ('QUEUED', 'RUNNING', 'AWAITING_APPROVAL')"),
        ),
        Index("ix_operation_state_created", "state", "created_at"),
        UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_operation_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))  # AWAITING_APPROVAL is 17
    # The full PipelineConfig the engine receives (JSON), fixed when the request was accepted.
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    recover: Mapped[bool] = mapped_column(Boolean, default=False)
    # Environment state to restore if the operation is cancelled before it starts.
    environment_state_before: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    idempotency_scope: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    runner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    timeout_s: Mapped[float] = mapped_column(Float)
    # Approvals (docs/architecture.md §8). `approval_required`: the first run is the engine's
    # preview, which ends AWAITING_APPROVAL with `preview` attached; `approved_by` set means
    # the next run is the real one. `preview_fingerprint` is what the environment looked like
    # when the preview was requested: approval is refused once it differs.
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    preview_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    awaiting_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The rollout that requested it (docs/architecture.md §7), if any.
    rollout_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revision: Mapped[int] = revision_column()


class OperationEventRow(Base):
    __tablename__ = "operation_events"
    __table_args__ = (UniqueConstraint("operation_id", "seq", name="uq_event_operation_seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    resource: Mapped[str | None] = mapped_column(Text, nullable=True)
    resource_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
