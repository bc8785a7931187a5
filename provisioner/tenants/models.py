"""ORM table of tenant quotas: one row per tenant that has one (no row: no limits)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow


class TenantQuotaRow(Base):
    __tablename__ = "tenant_quotas"

    tenant: Mapped[str] = mapped_column(String(20), primary_key=True)
    # None: that dimension is unlimited.
    max_environments: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allowed_regions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    max_memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
