"""Queries on tenant quotas and on what tenants use."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.tenants.models import TenantQuotaRow


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant: str) -> TenantQuotaRow | None:
        return self.session.get(TenantQuotaRow, tenant)

    def lock(self, tenant: str) -> TenantQuotaRow | None:
        """The tenant's quota, locked until the transaction ends: creates of one tenant run
        one after another from here on. PostgreSQL locks the row (`FOR UPDATE`); SQLite's
        transactions already hold the database's write lock (BEGIN IMMEDIATE)."""
        return self.session.scalars(
            select(TenantQuotaRow)
            .where(TenantQuotaRow.tenant == tenant)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, row: TenantQuotaRow) -> None:
        self.session.add(row)
        self.session.flush()

    def all(self) -> Sequence[TenantQuotaRow]:
        return self.session.scalars(select(TenantQuotaRow).order_by(TenantQuotaRow.tenant)).all()

    def environments_in_use(self, tenant: str | None = None) -> dict[str, int]:
        """Environments that are not DESTROYED, by tenant: what counts against a quota."""
        query = (
            select(EnvironmentRow.tenant, func.count(EnvironmentRow.id))
            .where(EnvironmentRow.state != EnvironmentState.DESTROYED)
            .group_by(EnvironmentRow.tenant)
        )
        if tenant is not None:
            query = query.where(EnvironmentRow.tenant == tenant)
        return {name: count for name, count in self.session.execute(query).all()}
