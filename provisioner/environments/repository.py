"""Queries on environments."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    bindparam,
    func,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from provisioner.environments.models import DriftStatus, EnvironmentRow
from provisioner.environments.outdated import outdated_condition
from provisioner.monitoring.models import EnvironmentHealthRow
from provisioner.operations.models import OperationRow
from provisioner.templates.repository import latest_versions_query


def _as_stored(column: Any) -> ColumnElement[Any]:
    """A column as the database returns it, before any result processing (hashable, cheap)."""
    return type_coerce(column, String).label(f"{column.table.name}_{column.name}")


# What a listed environment's JSON is made of (docs/architecture.md §5), as versions: its row,
# its last operation's row, its health sample (§8), each as its key, its revision (one more at
# every UPDATE, provisioner.db.revision_column) and its creation time (a row deleted and
# written again under its key starts its revisions afresh), and its template's latest version.
# Equal values here mean an equal rendering (provisioner.environments.listing). The id first.
_LATEST = latest_versions_query().subquery()
_STORED: tuple[ColumnElement[Any], ...] = (
    EnvironmentRow.id.label("environments_id"),
    *(
        _as_stored(column)
        for column in (
            EnvironmentRow.revision,
            EnvironmentRow.created_at,
            OperationRow.id,
            OperationRow.revision,
            OperationRow.created_at,
            EnvironmentHealthRow.revision,
            EnvironmentHealthRow.checked_at,
        )
    ),
    _LATEST.c.latest,
)


@functools.cache
def _page_statements(
    by_tenant: bool,
    by_state: bool,
    by_template: bool,
    outdated: bool | None,
    drifted: bool | None,
) -> tuple[Select[Any], Select[Any]]:
    """The count and the page of `stored_page`, built once for each combination of filters
    (their values are parameters), so that SQLAlchemy compiles each once."""
    conditions: list[ColumnElement[bool]] = []
    if by_tenant:
        conditions.append(EnvironmentRow.tenant == bindparam("tenant"))
    if by_state:
        conditions.append(EnvironmentRow.state == bindparam("state"))
    if by_template:
        conditions.append(EnvironmentRow.template_name == bindparam("template"))
    if drifted is not None:
        is_drifted = EnvironmentRow.drift_status == DriftStatus.DRIFTED
        conditions.append(is_drifted if drifted else ~is_drifted)
    matching = select(EnvironmentRow.id).where(*conditions)
    if outdated is not None:
        matching = matching.outerjoin(
            _LATEST, _LATEST.c.template_name == EnvironmentRow.template_name
        ).where(outdated_condition(_LATEST, outdated, bindparam("code_version")))
    count = select(func.count()).select_from(matching.subquery())
    # The page's ids first (an index scan), then the joins for those rows only: joined rows
    # that OFFSET skips would cost as much as the ones returned.
    ids = (
        matching.order_by(EnvironmentRow.tenant, EnvironmentRow.name)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    page = (
        _with_last_operation(select(*_STORED).select_from(EnvironmentRow))
        .where(EnvironmentRow.id.in_(ids.scalar_subquery()))
        .order_by(EnvironmentRow.tenant, EnvironmentRow.name)
    )
    return count, page


def _with_last_operation(query: Select[Any]) -> Select[Any]:
    return (
        query.outerjoin(_LATEST, _LATEST.c.template_name == EnvironmentRow.template_name)
        .outerjoin(OperationRow, OperationRow.id == EnvironmentRow.last_operation_id)
        .outerjoin(EnvironmentHealthRow, EnvironmentHealthRow.environment_id == EnvironmentRow.id)
    )


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

    def stored_page(
        self,
        *,
        tenant: str | None,
        state: str | None,
        template: str | None,
        outdated: bool | None,
        drifted: bool | None,
        code_version: str,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[tuple[Any, ...]], int]:
        """A page of environments (by tenant and name) as stored values (`_STORED`: the id
        first), and the total. `outdated` compares with the service's `code_version`;
        `drifted`: whose last drift check found drift (true) or not (false)."""
        count, page = _page_statements(
            tenant is not None, state is not None, template is not None, outdated, drifted
        )
        values = {
            "tenant": tenant,
            "state": state,
            "template": template,
            "code_version": code_version,
            "limit": limit,
            "offset": offset,
        }
        connection = self.session.connection()
        total = connection.execute(count, values).scalar() or 0
        return [tuple(row) for row in connection.execute(page, values).all()], total

    def stored_rows(
        self, ids: Sequence[str]
    ) -> Sequence[
        tuple[
            tuple[Any, ...],
            EnvironmentRow,
            OperationRow | None,
            EnvironmentHealthRow | None,
            int | None,
        ]
    ]:
        """The environments `ids` as stored values (as `stored_page` gives them) and as rows,
        with their last operation, health sample and template's latest version, read by one
        statement: the values and the rows agree, whatever changes meanwhile."""
        query = _with_last_operation(
            select(
                *_STORED, EnvironmentRow, OperationRow, EnvironmentHealthRow, _LATEST.c.latest
            ).select_from(EnvironmentRow)
        ).where(EnvironmentRow.id.in_(ids))
        width = len(_STORED)
        return [
            (tuple(row[:width]), row[width], row[width + 1], row[width + 2], row[width + 3])
            for row in self.session.execute(query).all()
        ]

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
