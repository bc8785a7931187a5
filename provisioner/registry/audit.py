"""Queries on the audit log: who did what, when, with which result."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.registry.tables import AuditRow


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: AuditRow) -> None:
        self.session.add(row)

    def list(
        self, *, tenant: str | None, actor: str | None, limit: int, offset: int
    ) -> tuple[Sequence[AuditRow], int]:
        query = select(AuditRow)
        if tenant is not None:
            query = query.where(AuditRow.tenant == tenant)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(AuditRow.id.desc()).limit(limit).offset(offset)
        ).all()
        return rows, total
