"""Queries on operations and their events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer

from provisioner.db import utcnow
from provisioner.engines.base import EngineEvent
from provisioner.operations.models import (
    ACTIVE_OPERATION_STATES,
    OperationEventRow,
    OperationRow,
    OperationState,
)


class OperationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, operation_id: str) -> OperationRow | None:
        return self.session.get(OperationRow, operation_id)

    def by_ids(self, operation_ids: Sequence[str]) -> dict[str, OperationRow]:
        if not operation_ids:
            return {}
        # For listings: the full request (a PipelineConfig) is not shown, so not loaded.
        rows = self.session.scalars(
            select(OperationRow)
            .options(defer(OperationRow.request))
            .where(OperationRow.id.in_(operation_ids))
        )
        return {row.id: row for row in rows}

    def add(self, row: OperationRow) -> None:
        self.session.add(row)
        self.session.flush()

    def by_idempotency_key(self, scope: str, key: str) -> OperationRow | None:
        return self.session.scalars(
            select(OperationRow).where(
                OperationRow.idempotency_scope == scope, OperationRow.idempotency_key == key
            )
        ).one_or_none()

    def active_for(self, environment_id: str) -> OperationRow | None:
        return self.session.scalars(
            select(OperationRow).where(
                OperationRow.environment_id == environment_id,
                OperationRow.state.in_(ACTIVE_OPERATION_STATES),
            )
        ).one_or_none()

    def list(
        self,
        *,
        environment_id: str | None = None,
        tenant: str | None = None,
        state: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[OperationRow], int]:
        query = select(OperationRow)
        if environment_id is not None:
            query = query.where(OperationRow.environment_id == environment_id)
        if tenant is not None:
            query = query.where(OperationRow.tenant == tenant)
        if state is not None:
            query = query.where(OperationRow.state == state)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(OperationRow.created_at.desc(), OperationRow.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, total

    def count_in_state(self, state: OperationState) -> int:
        return self.session.scalar(select(func.count()).where(OperationRow.state == state)) or 0

    def count_active_by_kind(self) -> dict[str, int]:
        query = (
            select(OperationRow.kind, func.count())
            .where(OperationRow.state.in_(ACTIVE_OPERATION_STATES))
            .group_by(OperationRow.kind)
        )
        return {kind: count for kind, count in self.session.execute(query).all()}

    def oldest_queued(self, limit: int) -> Sequence[OperationRow]:
        return self.session.scalars(
            select(OperationRow)
            .where(OperationRow.state == OperationState.QUEUED)
            .order_by(OperationRow.created_at, OperationRow.id)
            .limit(limit)
        ).all()

    def transition(
        self,
        operation_id: str,
        *,
        from_states: Sequence[OperationState],
        to_state: OperationState,
        **values: Any,
    ) -> bool:
        """Compare-and-set the state; returns whether this call made the transition."""
        result = self.session.execute(
            update(OperationRow)
            .where(OperationRow.id == operation_id, OperationRow.state.in_(from_states))
            .values(state=to_state, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def heartbeat(self, operation_id: str, runner_id: str) -> None:
        self.session.execute(
            update(OperationRow)
            .where(
                OperationRow.id == operation_id,
                OperationRow.runner_id == runner_id,
                OperationRow.state == OperationState.RUNNING,
            )
            .values(heartbeat_at=utcnow())
        )

    def heartbeat_runner(self, runner_id: str) -> None:
        """Every RUNNING operation this runner claimed is alive."""
        self.session.execute(
            update(OperationRow)
            .where(
                OperationRow.runner_id == runner_id,
                OperationRow.state == OperationState.RUNNING,
            )
            .values(heartbeat_at=utcnow())
        )

    def stale_running(self, heartbeat_before: datetime) -> Sequence[OperationRow]:
        return self.session.scalars(
            select(OperationRow).where(
                OperationRow.state == OperationState.RUNNING,
                (OperationRow.heartbeat_at.is_(None))
                | (OperationRow.heartbeat_at < heartbeat_before),
            )
        ).all()

    def set_progress(self, operation_id: str, done: int, total: int) -> None:
        self.session.execute(
            update(OperationRow)
            .where(OperationRow.id == operation_id)
            .values(progress_done=done, progress_total=total)
        )

    # --- events ---

    def next_event_seq(self, operation_id: str) -> int:
        current = self.session.scalar(
            select(func.max(OperationEventRow.seq)).where(
                OperationEventRow.operation_id == operation_id
            )
        )
        return (current or 0) + 1

    def add_event(self, row: OperationEventRow) -> None:
        self.session.add(row)
        self.session.flush()

    def append_event(
        self,
        operation_id: str,
        event: EngineEvent,
        done: int | None = None,
        total: int | None = None,
    ) -> OperationEventRow:
        """Record the operation's next event (ids increase by one within an operation), with
        the progress given or, by default, the operation's current progress."""
        if done is None or total is None:
            current = self.get(operation_id)
            done = current.progress_done if current else 0
            total = current.progress_total if current else 0
        row = OperationEventRow(
            operation_id=operation_id,
            seq=self.next_event_seq(operation_id),
            type=event.type,
            message=event.message,
            resource=event.resource,
            resource_type=event.resource_type,
            step=event.step,
            severity=event.severity,
            data=dict(event.data),
            progress_done=done,
            progress_total=total,
            created_at=utcnow(),
        )
        self.add_event(row)
        return row

    def events_after(
        self, operation_id: str, after_seq: int, limit: int = 500
    ) -> Sequence[OperationEventRow]:
        return self.session.scalars(
            select(OperationEventRow)
            .where(
                OperationEventRow.operation_id == operation_id, OperationEventRow.seq > after_seq
            )
            .order_by(OperationEventRow.seq)
            .limit(limit)
        ).all()
