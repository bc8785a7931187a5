"""`/operations`: follow, stream and cancel operations."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from provisioner.audit.middleware import audit_target
from provisioner.auth.service import Principal
from provisioner.deps import (
    AppStateDep,
    EnvironmentServiceDep,
    Limit,
    Offset,
    PrincipalDep,
    RunnerDep,
)
from provisioner.environments.approvals import ApprovalService
from provisioner.environments.service import EnvironmentService
from provisioner.errors import error_responses
from provisioner.operations.models import FINAL_OPERATION_STATES, OperationEventRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.operations.runner import OperationRunner
from provisioner.operations.schemas import OperationPublic, event_public, operation_public
from provisioner.schemas import Page
from provisioner.state import AppState
from provisioner.streams import EVENT_BATCH, follow, parse_event_id

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/operations", tags=["operations"])


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


def _decide(
    operation_id: str,
    request: Request,
    principal: Principal,
    service: EnvironmentService,
    runner: OperationRunner,
    approve: bool,
) -> OperationPublic:
    approvals = ApprovalService(service.session)
    if approve:
        operation = approvals.approve(principal, operation_id)
    else:
        operation = approvals.reject(principal, operation_id)
    audit_target(request, operation.tenant, operation.id)
    service.session.commit()
    runner.wake()
    return operation_public(operation)


@router.post(
    "/{operation_id}/approve",
    status_code=202,
    response_model=OperationPublic,
    responses=error_responses(403, 404, 409),
    summary="Approve an operation awaiting approval (an admin key other than the requester's)",
)
def approve_operation(
    operation_id: str,
    request: Request,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    runner: RunnerDep,
) -> OperationPublic:
    return _decide(operation_id, request, principal, service, runner, approve=True)


@router.post(
    "/{operation_id}/reject",
    response_model=OperationPublic,
    responses=error_responses(403, 404, 409),
    summary="Reject an operation awaiting approval: it is cancelled",
)
def reject_operation(
    operation_id: str,
    request: Request,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    runner: RunnerDep,
) -> OperationPublic:
    return _decide(operation_id, request, principal, service, runner, approve=False)


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
    start = after if after is not None else parse_event_id(last_event_id)
    events = follow(
        request=request,
        database=services.database,
        notifier=services.notifier,
        channel=operation_id,
        key_id=principal.key_id,
        read=lambda seq: _read(services, operation_id, seq),
        after=start,
    )
    return EventSourceResponse(events, ping=15)


def _load_visible(services: AppState, principal: Principal, operation_id: str) -> None:
    with services.database.session(readonly=True) as session:
        EnvironmentService(session, services.settings, services.engine_name).get_operation(
            principal, operation_id
        )


def _read(
    services: AppState, operation_id: str, after: int
) -> tuple[bool, list[tuple[int, ServerSentEvent]]]:
    with services.database.session(readonly=True) as session:
        operations = OperationRepository(session)
        operation = operations.get(operation_id)
        finished = operation is None or operation.state in FINAL_OPERATION_STATES
        rows = operations.events_after(operation_id, after, EVENT_BATCH)
        events = [(row.seq, _sse(row)) for row in rows]
    return finished, events


def _sse(row: OperationEventRow) -> ServerSentEvent:
    payload = event_public(row).model_dump(mode="json", by_alias=True)
    return ServerSentEvent(data=json.dumps(payload), id=str(row.seq), event=row.type)
