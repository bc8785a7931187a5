"""Queries on environments' health samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.monitoring.models import EnvironmentHealthRow


class HealthRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, environment_id: str) -> EnvironmentHealthRow | None:
        return self.session.get(EnvironmentHealthRow, environment_id)

    def by_environments(self, environment_ids: Iterable[str]) -> dict[str, EnvironmentHealthRow]:
        """One query for a page of environments."""
        ids = list(set(environment_ids))
        if not ids:
            return {}
        rows = self.session.scalars(
            select(EnvironmentHealthRow).where(EnvironmentHealthRow.environment_id.in_(ids))
        )
        return {row.environment_id: row for row in rows}

    def record(self, environment_id: str, version: int | None, values: Mapping[str, Any]) -> bool:
        """Write a sample over `version` (None: the first one); False if another got there
        first (the row changed, or was created, since `version` was read)."""
        if version is None:
            try:
                with self.session.begin_nested():
                    self.session.add(
                        EnvironmentHealthRow(environment_id=environment_id, version=1, **values)
                    )
            except IntegrityError:
                return False
            return True
        result = self.session.execute(
            update(EnvironmentHealthRow)
            .where(
                EnvironmentHealthRow.environment_id == environment_id,
                EnvironmentHealthRow.version == version,
            )
            .values(version=version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1
