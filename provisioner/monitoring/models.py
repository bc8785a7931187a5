"""The last health sample of each environment, and what its failure notifications have seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, revision_column


class EnvironmentHealthRow(Base):
    __tablename__ = "environment_health"

    environment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The public `health` object without `checkedAt` (schemas.HealthPublic).
    health: Mapped[dict[str, Any]] = mapped_column(JSON)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # `files.failed` bookkeeping: the newest `updatedAt` notified, and the failures notified
    # within the look-back window before it ({"fileId#attempt": updatedAt}).
    failed_watermark: Mapped[str] = mapped_column(String(40))
    failed_recent: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Compare-and-set: a sample is recorded only over the version it started from, so two
    # replicas sampling at once record (and notify) once.
    version: Mapped[int] = mapped_column(Integer, default=1)
    revision: Mapped[int] = revision_column()
