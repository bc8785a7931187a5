"""Queries on the fleet's samples."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from provisioner.fleet.models import FleetSampleRow


class FleetSampleRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def has_period(self, period_start: datetime, tenant: str) -> bool:
        return self.session.get(FleetSampleRow, (period_start, tenant)) is not None

    def add_period(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert one period's rows; rows another replica wrote first are kept, not doubled.
        Returns how many this call inserted."""
        if not rows:
            return 0
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(FleetSampleRow)
            .values(list(rows))
            .on_conflict_do_nothing()
            .returning(FleetSampleRow.tenant)
        )
        # RETURNING names the rows inserted: a multi-row insert's rowcount is not reliable.
        return len(self.session.execute(statement).all())

    def since(self, tenant: str, start: datetime) -> Sequence[FleetSampleRow]:
        return self.session.scalars(
            select(FleetSampleRow)
            .where(FleetSampleRow.tenant == tenant, FleetSampleRow.period_start >= start)
            .order_by(FleetSampleRow.period_start)
        ).all()

    def prune(self, before: datetime) -> int:
        result = self.session.execute(
            delete(FleetSampleRow)
            .where(FleetSampleRow.period_start < before)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)
