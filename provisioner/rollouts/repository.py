"""Queries on rollouts, their targets and their events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioner.db import utcnow
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.outdated import outdated_condition
from provisioner.rollouts.models import (
    ACTIVE_ROLLOUT_STATES,
    RolloutEventRow,
    RolloutRow,
    RolloutTargetRow,
    TargetState,
)
from provisioner.templates.repository import latest_versions_query


class RolloutRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, rollout_id: str) -> RolloutRow | None:
        return self.session.get(RolloutRow, rollout_id)

    def lock(self, rollout_id: str, *, skip_locked: bool = False) -> RolloutRow | None:
        """The rollout, re-read under a row lock held until the transaction ends: every writer
        of a rollout (a tick, a request, a verification's result) takes it first, so replicas
        change a rollout one at a time. With `skip_locked`, None if another holds it
        (PostgreSQL; SQLite's write lock already serialises)."""
        return self.session.scalars(
            select(RolloutRow)
            .where(RolloutRow.id == rollout_id)
            .with_for_update(skip_locked=skip_locked)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, row: RolloutRow, targets: Sequence[RolloutTargetRow]) -> None:
        self.session.add(row)
        self.session.flush()
        self.session.add_all(targets)
        self.session.flush()

    def list(
        self, *, tenant: str | None, state: str | None, limit: int, offset: int
    ) -> tuple[Sequence[RolloutRow], int]:
        query = select(RolloutRow)
        if tenant is not None:
            query = query.where(RolloutRow.tenant == tenant)
        if state is not None:
            query = query.where(RolloutRow.state == state)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(RolloutRow.created_at.desc(), RolloutRow.id).limit(limit).offset(offset)
        ).all()
        return rows, total

    def matching_environments(
        self,
        *,
        tenants: Sequence[str] | None,
        template: tuple[str, int | None] | None,
        outdated: bool | None,
        code_version: str,
        limit: int,
    ) -> Sequence[EnvironmentRow]:
        """Environments that are not DESTROYED, by tenant, then name; at most `limit`."""
        query = select(EnvironmentRow).where(EnvironmentRow.state != EnvironmentState.DESTROYED)
        if tenants is not None:
            query = query.where(EnvironmentRow.tenant.in_(tenants))
        if template is not None:
            name, version = template
            query = query.where(EnvironmentRow.template_name == name)
            if version is not None:
                query = query.where(EnvironmentRow.template_version == version)
        if outdated is not None:
            latest = latest_versions_query().subquery()
            query = query.outerjoin(
                latest, latest.c.template_name == EnvironmentRow.template_name
            ).where(outdated_condition(latest, outdated, code_version))
        return list(
            self.session.scalars(
                query.order_by(EnvironmentRow.tenant, EnvironmentRow.name).limit(limit)
            ).all()
        )

    def active_ids(self) -> Sequence[str]:
        return list(
            self.session.scalars(
                select(RolloutRow.id)
                .where(RolloutRow.state.in_(ACTIVE_ROLLOUT_STATES))
                .order_by(RolloutRow.created_at)
            ).all()
        )

    def targets(self, rollout_id: str) -> Sequence[RolloutTargetRow]:
        return list(
            self.session.scalars(
                select(RolloutTargetRow)
                .where(RolloutTargetRow.rollout_id == rollout_id)
                .order_by(RolloutTargetRow.position)
                .execution_options(populate_existing=True)
            ).all()
        )

    def target(self, target_id: int) -> RolloutTargetRow | None:
        return self.session.get(RolloutTargetRow, target_id)

    def target_counts(self, rollout_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Targets per state, per rollout: one query for a page of rollouts."""
        if not rollout_ids:
            return {}
        counts: dict[str, dict[str, int]] = {rollout_id: {} for rollout_id in rollout_ids}
        rows = self.session.execute(
            select(RolloutTargetRow.rollout_id, RolloutTargetRow.state, func.count())
            .where(RolloutTargetRow.rollout_id.in_(rollout_ids))
            .group_by(RolloutTargetRow.rollout_id, RolloutTargetRow.state)
        ).all()
        for rollout_id, state, count in rows:
            counts[rollout_id][state] = count
        return counts

    def unclaimed_verifications(self, stale_before: datetime) -> Sequence[RolloutTargetRow]:
        """Targets waiting for a verifier: never claimed, or claimed by a replica that has had
        more than the whole timeout to answer."""
        return list(
            self.session.scalars(
                select(RolloutTargetRow)
                .where(
                    RolloutTargetRow.state == TargetState.VERIFYING,
                    (RolloutTargetRow.verify_claimed_at.is_(None))
                    | (RolloutTargetRow.verify_claimed_at < stale_before),
                )
                .order_by(RolloutTargetRow.id)
            ).all()
        )

    def claim_verification(
        self, target_id: int, claimed_at: datetime | None, owner: str, now: datetime
    ) -> bool:
        """Compare-and-set: this replica verifies the target if nobody claimed it since
        `claimed_at` was read."""
        condition = (
            RolloutTargetRow.verify_claimed_at.is_(None)
            if claimed_at is None
            else RolloutTargetRow.verify_claimed_at == claimed_at
        )
        result = self.session.execute(
            update(RolloutTargetRow)
            .where(
                RolloutTargetRow.id == target_id,
                RolloutTargetRow.state == TargetState.VERIFYING,
                condition,
            )
            .values(verify_claimed_by=owner, verify_claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    # --- events ---

    def append_event(
        self, rollout_id: str, event_type: str, message: str, data: dict[str, Any]
    ) -> RolloutEventRow:
        """The rollout's next event; the caller holds the rollout's lock (`lock`), so the
        sequence numbers of one rollout never collide."""
        current = self.session.scalar(
            select(func.max(RolloutEventRow.seq)).where(RolloutEventRow.rollout_id == rollout_id)
        )
        row = RolloutEventRow(
            rollout_id=rollout_id,
            seq=(current or 0) + 1,
            type=event_type,
            message=message,
            data=data,
            created_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def events_after(
        self, rollout_id: str, after_seq: int, limit: int = 500
    ) -> Sequence[RolloutEventRow]:
        return self.session.scalars(
            select(RolloutEventRow)
            .where(RolloutEventRow.rollout_id == rollout_id, RolloutEventRow.seq > after_seq)
            .order_by(RolloutEventRow.seq)
            .limit(limit)
        ).all()
