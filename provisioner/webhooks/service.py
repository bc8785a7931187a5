"""Webhook subscriptions and the outbox.

`enqueue_event(session, type, tenant, data)` is the one entry point for producers of events:
call it inside the transaction that makes the change the event reports (e.g. an operation's
final state), so that the change and its deliveries commit together or not at all. The
dispatcher sends them afterwards. `type` is one of `models.EVENT_TYPES`; `tenant` is the
tenant the event concerns (None for service-wide events, which only webhooks without a tenant
receive); `data` is JSON-serialisable and must hold no secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from provisioner.auth.service import Principal
from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.errors import NotFoundError, PermissionDeniedError, ValidationFailed
from provisioner.logging import redactor
from provisioner.operations.models import OperationRow, OperationState
from provisioner.webhooks.allowlist import AllowList, HostRefusedError
from provisioner.webhooks.models import EVENT_TYPES, DeliveryRow, DeliveryState, WebhookRow
from provisioner.webhooks.repository import WebhookRepository
from provisioner.webhooks.schemas import WebhookCreate
from provisioner.webhooks.signing import generate_secret

log = structlog.get_logger(__name__)


def enqueue_event(
    session: Session,
    event_type: str,
    tenant: str | None,
    data: Mapping[str, Any],
    *,
    at: datetime | None = None,
) -> list[DeliveryRow]:
    """Write one delivery per subscribed webhook into the outbox, in the caller's transaction."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    repository = WebhookRepository(session)
    at = at or utcnow()
    deliveries = []
    for webhook in repository.subscribed_to(event_type, tenant):
        delivery_id = str(uuid.uuid4())
        body = {"id": delivery_id, "type": event_type, "at": _iso(at), "data": dict(data)}
        row = DeliveryRow(
            id=delivery_id,
            webhook_id=webhook.id,
            type=event_type,
            tenant=tenant,
            body=json.dumps(body, separators=(",", ":"), sort_keys=True, default=str),
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
        repository.add_delivery(row)
        deliveries.append(row)
    if deliveries:
        log.info("webhooks.event_enqueued", type=event_type, tenant=tenant, count=len(deliveries))
    return deliveries


def enqueue_operation_finished(session: Session, operation: OperationRow) -> None:
    """`operation.succeeded` / `operation.failed` for an operation that just reached its final
    state (INTERRUPTED counts as failed: it did not do what was asked). Cancelled operations
    did what their requester asked, and send nothing."""
    if operation.state == OperationState.SUCCEEDED:
        event_type = "operation.succeeded"
    elif operation.state in (OperationState.FAILED, OperationState.INTERRUPTED):
        event_type = "operation.failed"
    else:
        return
    error = (
        {"code": operation.error_code or "error", "message": operation.error}
        if operation.error is not None
        else None
    )
    enqueue_event(
        session,
        event_type,
        operation.tenant,
        {
            "operationId": operation.id,
            "kind": operation.kind,
            "state": operation.state,
            "tenant": operation.tenant,
            "name": operation.name,
            "requestedBy": operation.requested_by,
            "error": error,
            "createdAt": _iso(operation.created_at),
            "finishedAt": _iso(operation.finished_at) if operation.finished_at else None,
        },
        at=operation.finished_at,
    )


def retry_delay(attempts: int, initial_s: float, max_s: float) -> timedelta:
    """The wait after the `attempts`-th failed attempt: initial, doubling, capped."""
    return timedelta(seconds=min(max_s, initial_s * 2 ** max(0, attempts - 1)))


class WebhookService:
    """Managing subscriptions, for one caller. Tenant keys see only their tenant's webhooks;
    another tenant's answer 404 like ones that do not exist."""

    def __init__(self, session: Session, settings: Settings, principal: Principal) -> None:
        self.repository = WebhookRepository(session)
        self.settings = settings
        self.principal = principal

    def create(self, body: WebhookCreate) -> tuple[WebhookRow, str]:
        tenant = body.tenant
        if not self.principal.is_admin:
            if tenant is not None and tenant != self.principal.tenant:
                raise PermissionDeniedError("a tenant key manages only its own tenant's webhooks")
            tenant = self.principal.tenant
        try:
            AllowList.parse(self.settings.webhook_allowed_hosts).check(body.url)
        except HostRefusedError as error:
            raise ValidationFailed(
                [{"loc": ["body", "url"], "msg": str(error), "type": "value_error"}]
            ) from None
        secret = body.secret or generate_secret()
        redactor.register([secret])
        row = WebhookRow(
            id=str(uuid.uuid4()),
            url=body.url,
            events=list(body.events),
            secret=secret,
            tenant=tenant,
            created_by=self.principal.key_id,
            created_at=utcnow(),
        )
        self.repository.add(row)
        log.info("webhooks.created", webhook_id=row.id, tenant=tenant, events=row.events)
        return row, secret

    def list(
        self, *, tenant: str | None, limit: int, offset: int
    ) -> tuple[Sequence[WebhookRow], int]:
        if not self.principal.is_admin:
            if tenant is not None and tenant != self.principal.tenant:
                return [], 0
            tenant = self.principal.tenant
        return self.repository.list(tenant=tenant, limit=limit, offset=offset)

    def get(self, webhook_id: str) -> WebhookRow:
        row = self.repository.get(webhook_id, tenant=self.principal.tenant)
        if row is None:
            raise NotFoundError(f"webhook {webhook_id} not found")
        return row

    def delete(self, webhook_id: str) -> WebhookRow:
        row = self.get(webhook_id)
        self.repository.delete(row)
        log.info("webhooks.deleted", webhook_id=row.id, tenant=row.tenant)
        return row

    def deliveries(
        self, webhook_id: str, *, state: DeliveryState | None, limit: int, offset: int
    ) -> tuple[Sequence[DeliveryRow], int]:
        row = self.get(webhook_id)
        return self.repository.deliveries(row.id, state=state, limit=limit, offset=offset)

    def redeliver(self, webhook_id: str, delivery_id: str) -> DeliveryRow:
        """Send a delivery again, now, with the same id and body and a fresh attempt budget.
        Its place in the webhook's order is unchanged: it goes before any later pending one."""
        webhook = self.get(webhook_id)
        delivery = self.repository.get_delivery(webhook.id, delivery_id)
        if delivery is None:
            raise NotFoundError(f"delivery {delivery_id} of webhook {webhook_id} not found")
        delivery.state = DeliveryState.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = utcnow()
        delivery.delivered_at = None
        self.repository.session.flush()
        log.info("webhooks.redelivery_requested", webhook_id=webhook.id, delivery_id=delivery.id)
        return delivery


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
