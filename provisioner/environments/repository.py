"""Queries on environments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.environments.models import DriftStatus, EnvironmentRow
from provisioner.environments.outdated import filter_outdated


class EnvironmentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant: str, name: str) -> EnvironmentRow | None:
        return self.session.scalars(
            select(EnvironmentRow).where(
                EnvironmentRow.tenant == tenant, EnvironmentRow.name == name
            )
        ).one_or_none()

    def get_by_id(self, environment_id: str) -> EnvironmentRow | None:
        return self.session.get(EnvironmentRow, environment_id)

    def add(self, row: EnvironmentRow) -> None:
        self.session.add(row)
        self.session.flush()

    def list(
        self,
        *,
        tenant: str | None,
        state: str | None,
        limit: int,
        offset: int,
        template: str | None = None,
        outdated: bool | None = None,
        code_version: str = "",
        drifted: bool | None = None,
    ) -> tuple[Sequence[EnvironmentRow], int]:
        """A page of environments; `outdated` compares with the service's `code_version`;
        `drifted`: whose last drift check found drift (true) or not (false)."""
        conditions = []
        if drifted is not None:
            is_drifted = EnvironmentRow.drift_status == DriftStatus.DRIFTED
            conditions.append(is_drifted if drifted else ~is_drifted)
        if tenant is not None:
            conditions.append(EnvironmentRow.tenant == tenant)
        if state is not None:
            conditions.append(EnvironmentRow.state == state)
        if template is not None:
            conditions.append(EnvironmentRow.template_name == template)
        query = select(EnvironmentRow).where(*conditions)
        if outdated is not None:
            query = filter_outdated(query, outdated, code_version)
        # Counted on the key alone: a count over the full rows would read every JSON column.
        ids = query.with_only_columns(EnvironmentRow.id).order_by(None).subquery()
        total = self.session.scalar(select(func.count()).select_from(ids)) or 0
        rows = self.session.scalars(
            query.order_by(EnvironmentRow.tenant, EnvironmentRow.name).limit(limit).offset(offset)
        ).all()
        return rows, total

    def count_by_state(self, tenant: str | None = None) -> dict[str, int]:
        query = select(EnvironmentRow.state, func.count()).group_by(EnvironmentRow.state)
        if tenant is not None:
            query = query.where(EnvironmentRow.tenant == tenant)
        return {state: count for state, count in self.session.execute(query).all()}

    def in_states(
        self, states: Sequence[str], engine: str | None = None
    ) -> Sequence[EnvironmentRow]:
        query = select(EnvironmentRow).where(EnvironmentRow.state.in_(states))
        if engine is not None:
            query = query.where(EnvironmentRow.engine == engine)
        return self.session.scalars(query).all()
