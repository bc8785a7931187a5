"""Tables of the webhooks domain: the subscriptions and the outbox of their deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


# docs/architecture.md §8 (contract). Producers call `service.enqueue_event` with one of these.
EVENT_TYPES: Final = (
    "operation.succeeded",
    "operation.failed",
    "operation.awaiting_approval",
    "environment.drifted",
    "environment.expiring",
    "environment.expired",
    "rollout.succeeded",
    "rollout.halted",
    "files.failed",
    "environment.alarm",
)


class WebhookRow(Base):
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    # Kept as given: signing needs the secret itself, not a hash of it. It leaves the service
    # only in the creation response and as the HMAC key of each delivery.
    secret: Mapped[str] = mapped_column(String(256))
    # None: every tenant's events (admin keys only).
    tenant: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeliveryRow(Base):
    """One event for one webhook: the outbox row, and then its delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The dispatcher's question: each webhook's oldest pending delivery.
        Index("ix_delivery_state_webhook_seq", "state", "webhook_id", "seq"),
    )

    # Increasing in insertion order: the order of delivery per webhook.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(36), unique=True)
    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # The exact bytes sent (and signed), fixed when the event happened: a retry or a
    # redelivery sends the same body.
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Who is sending it now, until when: a replica claims a delivery by taking an expired lease.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
