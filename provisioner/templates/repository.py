"""Queries on templates and template versions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from provisioner.templates.models import TemplateRow, TemplateVersionRow


def latest_versions_query() -> Select[str, int]:
    """`(template_name, latest version)` per template: joined by the environment list's filter."""
    return select(
        TemplateVersionRow.template_name, func.max(TemplateVersionRow.version).label("latest")
    ).group_by(TemplateVersionRow.template_name)


class TemplateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, name: str) -> TemplateRow | None:
        return self.session.get(TemplateRow, name)

    def add(self, row: TemplateRow) -> None:
        self.session.add(row)
        self.session.flush()

    def add_version(self, row: TemplateVersionRow) -> None:
        self.session.add(row)
        self.session.flush()

    def version(self, name: str, version: int) -> TemplateVersionRow | None:
        return self.session.get(TemplateVersionRow, (name, version))

    def latest(self, name: str) -> TemplateVersionRow | None:
        return self.session.scalars(
            select(TemplateVersionRow)
            .where(TemplateVersionRow.template_name == name)
            .order_by(TemplateVersionRow.version.desc())
            .limit(1)
        ).one_or_none()

    def versions(self, name: str) -> Sequence[TemplateVersionRow]:
        return self.session.scalars(
            select(TemplateVersionRow)
            .where(TemplateVersionRow.template_name == name)
            .order_by(TemplateVersionRow.version)
        ).all()

    def list(self, *, limit: int, offset: int) -> tuple[Sequence[TemplateRow], int]:
        total = self.session.scalar(select(func.count(TemplateRow.name))) or 0
        rows = self.session.scalars(
            select(TemplateRow).order_by(TemplateRow.name).limit(limit).offset(offset)
        ).all()
        return rows, total

    def latest_versions(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """One query for the latest version of each named template (all when `names` is None)."""
        query = latest_versions_query()
        if names is not None:
            wanted = sorted(set(names))
            if not wanted:
                return {}
            query = query.where(TemplateVersionRow.template_name.in_(wanted))
        return {row[0]: row[1] for row in self.session.execute(query).all()}
