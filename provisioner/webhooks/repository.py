"""Queries on webhooks and their deliveries (the outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from provisioner.webhooks.models import DeliveryRow, DeliveryState, WebhookRow


class WebhookRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- webhooks ---

    def add(self, row: WebhookRow) -> None:
        self.session.add(row)
        self.session.flush()

    def get(self, webhook_id: str, *, tenant: str | None = None) -> WebhookRow | None:
        """The webhook; with `tenant`, only if it belongs to that tenant."""
        row = self.session.get(WebhookRow, webhook_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return row

    def list(
        self, *, tenant: str | None, limit: int, offset: int
    ) -> tuple[Sequence[WebhookRow], int]:
        query = select(WebhookRow)
        if tenant is not None:
            query = query.where(WebhookRow.tenant == tenant)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(WebhookRow.created_at, WebhookRow.id).limit(limit).offset(offset)
        ).all()
        return rows, total

    def delete(self, row: WebhookRow) -> None:
        self.session.execute(delete(DeliveryRow).where(DeliveryRow.webhook_id == row.id))
        self.session.delete(row)
        self.session.flush()

    def subscribed_to(self, event_type: str, tenant: str | None) -> Sequence[WebhookRow]:
        """Webhooks that receive this event: subscribed to its type, and either for every
        tenant or for the event's own."""
        query = select(WebhookRow).order_by(WebhookRow.created_at, WebhookRow.id)
        if tenant is None:
            query = query.where(WebhookRow.tenant.is_(None))
        else:
            query = query.where(or_(WebhookRow.tenant.is_(None), WebhookRow.tenant == tenant))
        # The event list is JSON; matched here rather than in SQL to stay portable.
        return [row for row in self.session.scalars(query) if event_type in row.events]

    def secrets(self) -> Sequence[str]:
        return self.session.scalars(select(WebhookRow.secret)).all()

    # --- deliveries ---

    def add_delivery(self, row: DeliveryRow) -> None:
        self.session.add(row)
        self.session.flush()

    def get_delivery(self, webhook_id: str, delivery_id: str) -> DeliveryRow | None:
        return self.session.scalars(
            select(DeliveryRow).where(
                DeliveryRow.webhook_id == webhook_id, DeliveryRow.id == delivery_id
            )
        ).one_or_none()

    def deliveries_by_id(self, delivery_ids: Sequence[str]) -> Sequence[DeliveryRow]:
        """In the order of the outbox."""
        return self.session.scalars(
            select(DeliveryRow).where(DeliveryRow.id.in_(delivery_ids)).order_by(DeliveryRow.seq)
        ).all()

    def deliveries(
        self, webhook_id: str, *, state: str | None, limit: int, offset: int
    ) -> tuple[Sequence[DeliveryRow], int]:
        query = select(DeliveryRow).where(DeliveryRow.webhook_id == webhook_id)
        if state is not None:
            query = query.where(DeliveryRow.state == state)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(DeliveryRow.seq.desc()).limit(limit).offset(offset)
        ).all()
        return rows, total

    def due_heads(
        self, now: datetime, *, limit: int, exclude_webhooks: Sequence[str] = ()
    ) -> Sequence[DeliveryRow]:
        """Each webhook's oldest pending delivery, where it is due and nobody holds it.

        Only the oldest: a later delivery of the same webhook waits for the earlier one
        (delivery in order per webhook).
        """
        heads = (
            select(DeliveryRow.webhook_id, func.min(DeliveryRow.seq).label("seq"))
            .where(DeliveryRow.state == DeliveryState.PENDING)
            .group_by(DeliveryRow.webhook_id)
            .subquery()
        )
        query = (
            select(DeliveryRow)
            .join(heads, DeliveryRow.seq == heads.c.seq)
            .where(
                DeliveryRow.next_attempt_at <= now,
                or_(DeliveryRow.lease_until.is_(None), DeliveryRow.lease_until < now),
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.seq)
            .limit(limit)
        )
        if exclude_webhooks:
            query = query.where(DeliveryRow.webhook_id.not_in(exclude_webhooks))
        return self.session.scalars(query).all()

    def claim(self, delivery_id: str, owner: str, now: datetime, lease_until: datetime) -> bool:
        """Take the delivery's lease if it is free and the delivery is still due and first in
        its webhook's line (compare-and-set: of several replicas asking at once, exactly one
        gets it), counting the attempt it is taken for."""
        earlier = aliased(DeliveryRow)
        result = self.session.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.state == DeliveryState.PENDING,
                DeliveryRow.next_attempt_at <= now,
                or_(DeliveryRow.lease_until.is_(None), DeliveryRow.lease_until < now),
                # Still its webhook's oldest pending one (order per webhook).
                ~exists().where(
                    earlier.webhook_id == DeliveryRow.webhook_id,
                    earlier.state == DeliveryState.PENDING,
                    earlier.seq < DeliveryRow.seq,
                ),
            )
            .values(lease_owner=owner, lease_until=lease_until, attempts=DeliveryRow.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def settle_attempt(self, delivery_id: str, owner: str, **values: Any) -> bool:
        """Record an attempt's outcome and release the lease, if this owner still holds it."""
        result = self.session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id, DeliveryRow.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)
