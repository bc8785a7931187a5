"""Queries on the audit log: who did what, when, with which result."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.audit.models import AuditRow


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: AuditRow) -> None:
        self.session.add(row)

    def list(
        self, *, tenant: str | None, actor: str | None, limit: int, offset: int
    ) -> tuple[Sequence[AuditRow], int]:
        conditions = []
        if tenant is not None:
            conditions.append(AuditRow.tenant == tenant)
        if actor is not None:
            conditions.append(AuditRow.actor == actor)
        total = self.session.scalar(select(func.count(AuditRow.id)).where(*conditions)) or 0
        rows = self.session.scalars(
            select(AuditRow)
            .where(*conditions)
            .order_by(AuditRow.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, total
