"""ORM table of environments. States are stored as their string values."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, revision_column, utcnow


class EnvironmentState(StrEnum):
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    UPDATING = "UPDATING"
    DESTROYING = "DESTROYING"
    DESTROYED = "DESTROYED"
    FAILED = "FAILED"


class DriftStatus(StrEnum):
    IN_SYNC = "IN_SYNC"
    DRIFTED = "DRIFTED"
    UNKNOWN = "UNKNOWN"  # never checked, or changed since the last check


class EnvironmentRow(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_environment_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(16), index=True)
    engine: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    # The effective config: the PipelineConfig fields other than tenant, environment, region
    # and tags, i.e. the template version's config overlaid with `config_overrides`.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The environment's own part of `config` (docs/architecture.md §7). Columns added after
    # the first release carry server defaults: provisioner.migrations adds them to old tables.
    config_overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    template_name: Mapped[str] = mapped_column(String(12), server_default=text("'default'"))
    template_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # What the last SUCCEEDED create/update applied (provisioner.versions); None before one.
    code_version: Mapped[str | None] = mapped_column(String(12), nullable=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    outputs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Expiry (docs/architecture.md §8): when the service destroys the environment by itself,
    # the warning lead times (minutes) already sent for this expiry, and when the scheduler
    # queued the destroy (set once, by compare-and-set: replicas never destroy twice).
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    expiry_warnings_sent: Mapped[list[int]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Updates and destroys wait for another admin's approval of their preview.
    protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Drift (docs/architecture.md §8): the last drift check's verdict (`DriftStatus`), when it
    # ran, what it found (`ResourceDrift`s as JSON) and the operation that ran it.
    drift_status: Mapped[str] = mapped_column(
        String(8), default="UNKNOWN", server_default=text("'UNKNOWN'")
    )
    drift_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    drift_changes: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    drift_operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Scheduled checks: minutes between them (None: the service's default; 0: never), whether
    # found drift is remediated, when the next check is due (moved on by compare-and-set when a
    # check is queued: replicas never queue two for one due time), and the check whose drift a
    # remediation was queued for (set once per check, by compare-and-set).
    drift_check_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    drift_remediate: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    drift_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    drift_remediated_for: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revision: Mapped[int] = revision_column()
