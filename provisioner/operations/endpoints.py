"""`/operations`: follow, stream and cancel operations."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from provisioner.audit.middleware import audit_target
from provisioner.auth.repository import ApiKeyRepository
from provisioner.auth.service import Principal
from provisioner.deps import (
    AppStateDep,
    EnvironmentServiceDep,
    Limit,
    Offset,
    PrincipalDep,
    RunnerDep,
)
from provisioner.environments.service import EnvironmentService
from provisioner.errors import error_responses
from provisioner.operations.models import FINAL_OPERATION_STATES, OperationEventRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.operations.schemas import OperationPublic, event_public, operation_public
from provisioner.schemas import Page
from provisioner.state import AppState

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/operations", tags=["operations"])

_EVENT_BATCH = 500
# Streams re-check the registry at least this often (events from other replicas).
_POLL_S = 1.0
# A stream ends this soon after the key that opened it is revoked (docs/architecture.md §9).
_KEY_CHECK_S = 2.0


@router.get("", response_model=Page[OperationPublic], responses=error_responses())
def list_operations(
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    state: Annotated[OperationState | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[OperationPublic]:
    rows, total = service.operations.list(
        tenant=principal.tenant, state=state, limit=limit, offset=offset
    )
    return Page(items=[operation_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{operation_id}", response_model=OperationPublic, responses=error_responses(404))
def get_operation(
    operation_id: str, principal: PrincipalDep, service: EnvironmentServiceDep
) -> OperationPublic:
    return operation_public(service.get_operation(principal, operation_id))


@router.post(
    "/{operation_id}/cancel",
    status_code=202,
    response_model=OperationPublic,
    responses=error_responses(404, 409),
    summary="Cancel: a queued operation at once, a running one gracefully",
)
def cancel_operation(
    operation_id: str,
    request: Request,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    runner: RunnerDep,
) -> OperationPublic:
    operation = service.cancel(principal, operation_id)
    audit_target(request, operation.tenant, operation.id)
    service.session.commit()
    runner.request_cancel(operation_id)
    runner.wake()
    return operation_public(operation)


@router.get(
    "/{operation_id}/events",
    responses={
        200: {
            "description": "Server-Sent Events: one per engine event, `id` increasing; "
            "the stream ends when the operation ends. Resume with Last-Event-ID.",
            "content": {"text/event-stream": {}},
        },
        **error_responses(404),
    },
    response_class=EventSourceResponse,
)
async def stream_operation_events(
    operation_id: str,
    request: Request,
    principal: PrincipalDep,
    services: AppStateDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Replay events after this id")
    ] = None,
) -> EventSourceResponse:
    await asyncio.to_thread(_load_visible, services, principal, operation_id)
    start = after if after is not None else _parse_event_id(last_event_id)
    return EventSourceResponse(_events(services, request, principal, operation_id, start), ping=15)


def _parse_event_id(value: str | None) -> int:
    try:
        return min(max(0, int(value)), 2**31 - 1) if value else 0
    except ValueError:
        return 0


def _load_visible(services: AppState, principal: Principal, operation_id: str) -> None:
    with services.database.session(readonly=True) as session:
        EnvironmentService(session, services.settings, services.engine_name).get_operation(
            principal, operation_id
        )


async def _events(
    services: AppState, request: Request, principal: Principal, operation_id: str, after: int
) -> AsyncIterator[ServerSentEvent]:
    seq = after
    key_checked = time.monotonic()
    while True:
        if time.monotonic() - key_checked >= _KEY_CHECK_S:
            if not await asyncio.to_thread(_key_active, services, principal.key_id):
                log.info("operations.stream_key_revoked", operation_id=operation_id)
                return
            key_checked = time.monotonic()
        finished, rows = await asyncio.to_thread(_read, services, operation_id, seq)
        for row in rows:
            seq = row.seq
            payload = event_public(row).model_dump(mode="json", by_alias=True)
            yield ServerSentEvent(data=json.dumps(payload), id=str(row.seq), event=row.type)
        # The final event is written with the final state, so once the state is final and
        # nothing is left to read, the stream is complete.
        if finished and len(rows) < _EVENT_BATCH:
            return
        if rows:
            continue
        if await request.is_disconnected():
            return
        await services.notifier.wait(operation_id, _POLL_S)


def _key_active(services: AppState, key_id: str) -> bool:
    with services.database.session(readonly=True) as session:
        row = ApiKeyRepository(session).get(key_id)
        return row is not None and row.revoked_at is None


def _read(
    services: AppState, operation_id: str, after: int
) -> tuple[bool, list[OperationEventRow]]:
    with services.database.session(readonly=True) as session:
        operations = OperationRepository(session)
        operation = operations.get(operation_id)
        finished = operation is None or operation.state in FINAL_OPERATION_STATES
        rows = list(operations.events_after(operation_id, after, _EVENT_BATCH))
    return finished, rows
