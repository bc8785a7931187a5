"""ORM table of the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # API key id, or "anonymous"
    scope: Mapped[str | None] = mapped_column(String(40), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(120))  # e.g. "POST /environments"
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(String(32))  # accepted / ok / denied / rejected / error
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
