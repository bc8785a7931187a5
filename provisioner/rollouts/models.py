"""ORM tables of rollouts (docs/architecture.md §7), their targets and their events. States are
stored as their string values."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow


class RolloutState(StrEnum):
    RUNNING = "RUNNING"
    # Starts nothing new; started targets finish. Resumed by a request.
    PAUSED = "PAUSED"
    # More targets failed than `maxFailures` allows: nothing new starts, started ones finish.
    HALTING = "HALTING"
    # Cancelled: pending targets were skipped, targets already running finish.
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    HALTED = "HALTED"
    CANCELLED = "CANCELLED"


FINAL_ROLLOUT_STATES = (RolloutState.SUCCEEDED, RolloutState.HALTED, RolloutState.CANCELLED)
ACTIVE_ROLLOUT_STATES = (
    RolloutState.RUNNING,
    RolloutState.PAUSED,
    RolloutState.HALTING,
    RolloutState.CANCELLING,
)


class TargetState(StrEnum):
    PENDING = "PENDING"
    # Its operation is queued, awaiting approval or running.
    RUNNING = "RUNNING"
    # Its operation succeeded; the data-plane smoke test runs (`verify: true`).
    VERIFYING = "VERIFYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


ACTIVE_TARGET_STATES = (TargetState.RUNNING, TargetState.VERIFYING)
FINAL_TARGET_STATES = (TargetState.SUCCEEDED, TargetState.FAILED, TargetState.SKIPPED)


class RolloutAction(StrEnum):
    UPDATE = "update"
    REFRESH = "refresh"


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The tenant whose keys see the rollout: a tenant key's own, or the one tenant an admin's
    # selector named; None (admins only) for a rollout over several tenants.
    tenant: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    action: Mapped[str] = mapped_column(String(16))
    # The request as given (camelCase JSON): what the snapshot was taken from.
    selector: Mapped[dict[str, Any]] = mapped_column(JSON)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The service's code version when the rollout was created: a target already on it (and
    # on its goal template version) is skipped unless `force`.
    code_version: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Who started it: the targets' operations are requested in this key's name and scope.
    created_by: Mapped[str] = mapped_column(String(64))
    created_scope: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RolloutTargetRow(Base):
    """One environment of the snapshot. `attempts` counts the operations made for it: a second
    one only after the first was INTERRUPTED, so at most one of them ever SUCCEEDS."""

    __tablename__ = "rollout_targets"
    __table_args__ = (
        UniqueConstraint("rollout_id", "position", name="uq_rollout_target_position"),
        UniqueConstraint("rollout_id", "environment_id", name="uq_rollout_target_environment"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    canary: Mapped[bool] = mapped_column(Boolean, default=False)
    wave: Mapped[int] = mapped_column(Integer)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    tenant: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(16))
    # Where an update takes it (None for a refresh), and where it was when the snapshot was taken.
    template_name: Mapped[str] = mapped_column(String(12))
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_template_version: Mapped[int] = mapped_column(Integer)
    from_code_version: Mapped[str | None] = mapped_column(String(12), nullable=True)
    operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The canary file's final status item of a passed verification.
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The replica verifying it, claimed by compare-and-set; a claim older than the timeout
    # (its replica died) is taken over.
    verify_claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verify_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RolloutEventRow(Base):
    __tablename__ = "rollout_events"
    __table_args__ = (UniqueConstraint("rollout_id", "seq", name="uq_rollout_event_seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
