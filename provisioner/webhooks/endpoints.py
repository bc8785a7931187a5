"""`/admin/webhooks`: subscriptions and their delivery logs. Admin keys manage every webhook;
tenant keys only their own tenant's (another tenant's answer 404)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from provisioner.audit.middleware import audit_target
from provisioner.deps import AppStateDep, Limit, Offset, PrincipalDep, SessionDep
from provisioner.errors import error_responses
from provisioner.schemas import Page
from provisioner.webhooks.models import DeliveryRow, DeliveryState, WebhookRow
from provisioner.webhooks.schemas import (
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from provisioner.webhooks.service import WebhookService

router = APIRouter(prefix="/admin/webhooks", tags=["webhooks"])


def _service(session: SessionDep, services: AppStateDep, principal: PrincipalDep) -> WebhookService:
    return WebhookService(session, services.settings, principal)


WebhookServiceDep = Annotated[WebhookService, Depends(_service)]


def webhook_public(row: WebhookRow) -> WebhookPublic:
    # Never the secret: it is shown once, by `create_webhook`.
    return WebhookPublic(
        id=row.id,
        url=row.url,
        events=list(row.events),
        tenant=row.tenant,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def delivery_public(row: DeliveryRow) -> DeliveryPublic:
    return DeliveryPublic(
        id=row.id,
        type=row.type,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses=error_responses(400, 403, 422),
    summary="Subscribe a URL to events (the secret is returned once)",
)
def create_webhook(
    body: WebhookCreate, request: Request, service: WebhookServiceDep, session: SessionDep
) -> WebhookCreated:
    row, secret = service.create(body)
    session.commit()
    audit_target(request, row.tenant, row.id)
    return WebhookCreated(**webhook_public(row).model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookPublic], responses=error_responses())
def list_webhooks(
    service: WebhookServiceDep,
    tenant: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[WebhookPublic]:
    rows, total = service.list(tenant=tenant, limit=limit, offset=offset)
    return Page(items=[webhook_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=error_responses(404))
def get_webhook(webhook_id: str, service: WebhookServiceDep) -> WebhookPublic:
    return webhook_public(service.get(webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
    summary="Delete a webhook and its delivery log",
)
def delete_webhook(
    webhook_id: str, request: Request, service: WebhookServiceDep, session: SessionDep
) -> Response:
    row = service.delete(webhook_id)
    session.commit()
    audit_target(request, row.tenant, row.id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryPublic],
    responses=error_responses(404),
    summary="The webhook's delivery log, newest first",
)
def list_deliveries(
    webhook_id: str,
    service: WebhookServiceDep,
    state: Annotated[DeliveryState | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[DeliveryPublic]:
    rows, total = service.deliveries(webhook_id, state=state, limit=limit, offset=offset)
    return Page(items=[delivery_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryPublic,
    responses=error_responses(404),
    summary="Send a delivery again (same id and body)",
)
def redeliver(
    webhook_id: str,
    delivery_id: str,
    request: Request,
    service: WebhookServiceDep,
    session: SessionDep,
) -> DeliveryPublic:
    delivery = service.redeliver(webhook_id, delivery_id)
    session.commit()
    audit_target(request, delivery.tenant, delivery.id)
    return delivery_public(delivery)
