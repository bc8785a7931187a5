"""`/rollouts`: start fleet rollouts, follow them, pause, resume and cancel them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from provisioner.audit.middleware import audit_target
from provisioner.auth.service import Principal
from provisioner.deps import AppStateDep, Limit, Offset, PrincipalDep, SessionDep
from provisioner.errors import error_responses
from provisioner.rollouts.models import (
    FINAL_ROLLOUT_STATES,
    RolloutEventRow,
    RolloutRow,
    RolloutState,
)
from provisioner.rollouts.repository import RolloutRepository
from provisioner.rollouts.scheduler import stream_key
from provisioner.rollouts.schemas import (
    RolloutCreate,
    RolloutPublic,
    RolloutSummary,
    event_public,
    rollout_public,
    rollout_summary,
)
from provisioner.rollouts.service import RolloutService
from provisioner.schemas import Page
from provisioner.state import AppState
from provisioner.streams import EVENT_BATCH, follow, parse_event_id

router = APIRouter(prefix="/rollouts", tags=["rollouts"])


def _service(session: SessionDep, services: AppStateDep) -> RolloutService:
    return RolloutService(session, services.code_version)


RolloutServiceDep = Annotated[RolloutService, Depends(_service)]


def _public(service: RolloutService, row: RolloutRow) -> RolloutPublic:
    return rollout_public(row, service.rollouts.targets(row.id))


@router.post(
    "",
    status_code=202,
    response_model=RolloutPublic,
    responses=error_responses(400, 403, 422),
    summary="Start a rollout over a fixed snapshot of the environments a selector matches",
)
def create_rollout(
    body: RolloutCreate,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    service: RolloutServiceDep,
    services: AppStateDep,
) -> RolloutPublic:
    audit_target(request, principal.tenant, None)
    row = service.create(principal, body)
    audit_target(request, row.tenant, row.id)
    public = _public(service, row)
    service.session.commit()
    services.rollouts.wake()
    response.headers["Location"] = str(request.url_for("get_rollout", rollout_id=row.id))
    return public


@router.get("", response_model=Page[RolloutSummary], responses=error_responses())
def list_rollouts(
    principal: PrincipalDep,
    service: RolloutServiceDep,
    state: Annotated[RolloutState | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RolloutSummary]:
    rows, total = service.list(principal, state=state, limit=limit, offset=offset)
    counts = service.rollouts.target_counts([row.id for row in rows])
    items = [rollout_summary(row, counts.get(row.id, {})) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{rollout_id}", response_model=RolloutPublic, responses=error_responses(404))
def get_rollout(
    rollout_id: str, principal: PrincipalDep, service: RolloutServiceDep
) -> RolloutPublic:
    return _public(service, service.get_visible(principal, rollout_id))


def _action_route(
    action: Callable[[RolloutService, Principal, str], RolloutRow],
) -> Callable[..., RolloutPublic]:
    def run(
        rollout_id: str,
        request: Request,
        principal: PrincipalDep,
        service: RolloutServiceDep,
        services: AppStateDep,
    ) -> RolloutPublic:
        row = action(service, principal, rollout_id)
        audit_target(request, row.tenant, row.id)
        public = _public(service, row)
        service.session.commit()
        services.rollouts.wake()
        services.notifier.notify(stream_key(row.id))
        return public

    return run


for _name, _action, _summary in (
    ("pause", RolloutService.pause, "Pause: start no new target (running ones finish)"),
    ("resume", RolloutService.resume, "Resume a paused rollout"),
    (
        "cancel",
        RolloutService.cancel,
        "Cancel: skip pending targets and cancel unstarted operations; running ones finish",
    ),
):
    _route = _action_route(_action)
    _route.__name__ = f"{_name}_rollout"
    router.add_api_route(
        f"/{{rollout_id}}/{_name}",
        _route,
        methods=["POST"],
        response_model=RolloutPublic,
        responses=error_responses(404, 409),
        summary=_summary,
    )


@router.get(
    "/{rollout_id}/events",
    responses={
        200: {
            "description": "Server-Sent Events: one per change of the rollout or a target, `id` "
            "increasing; the stream ends when the rollout ends. Resume with Last-Event-ID.",
            "content": {"text/event-stream": {}},
        },
        **error_responses(404),
    },
    response_class=EventSourceResponse,
)
async def stream_rollout_events(
    rollout_id: str,
    request: Request,
    principal: PrincipalDep,
    services: AppStateDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Replay events after this id")
    ] = None,
) -> EventSourceResponse:
    await asyncio.to_thread(_load_visible, services, principal, rollout_id)
    events = follow(
        request=request,
        database=services.database,
        notifier=services.notifier,
        channel=stream_key(rollout_id),
        key_id=principal.key_id,
        read=lambda seq: _read(services, rollout_id, seq),
        after=after if after is not None else parse_event_id(last_event_id),
    )
    return EventSourceResponse(events, ping=15)


def _load_visible(services: AppState, principal: Principal, rollout_id: str) -> None:
    with services.database.session(readonly=True) as session:
        RolloutService(session, services.code_version).get_visible(principal, rollout_id)


def _read(
    services: AppState, rollout_id: str, after: int
) -> tuple[bool, list[tuple[int, ServerSentEvent]]]:
    with services.database.session(readonly=True) as session:
        rollouts = RolloutRepository(session)
        rollout = rollouts.get(rollout_id)
        finished = rollout is None or rollout.state in FINAL_ROLLOUT_STATES
        events = [
            (row.seq, _sse(row)) for row in rollouts.events_after(rollout_id, after, EVENT_BATCH)
        ]
    return finished, events


def _sse(row: RolloutEventRow) -> ServerSentEvent:
    payload = event_public(row).model_dump(mode="json", by_alias=True)
    return ServerSentEvent(data=json.dumps(payload), id=str(row.seq), event=row.type)
