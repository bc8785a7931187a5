"""`/environments/{tenant}/{name}/files` and `/dlq`: the environment's files and dead letters."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from handlers.core.status_model import FileStatus
from provisioner.audit.middleware import audit_target
from provisioner.auth.service import Principal
from provisioner.deps import AppStateDep, EnvironmentServiceDep, Limit, PrincipalDep
from provisioner.environments.service import EnvironmentService
from provisioner.errors import error_responses
from provisioner.files.schemas import (
    DeadLetterPublic,
    DeadLetterQueuePublic,
    DeadLetterReport,
    FilePagePublic,
    FileRecord,
    FileStatsBucket,
    FileStatsPublic,
    LatencyPublic,
    RedriveResult,
)
from provisioner.files.service import EnvironmentDataPlane
from provisioner.files.stats import Latency
from provisioner.state import AppState

router = APIRouter(prefix="/environments/{tenant}/{name}", tags=["files"])


def _data_plane(
    services: AppState, service: EnvironmentService, principal: Principal, tenant: str, name: str
) -> EnvironmentDataPlane:
    row = service.get_visible(principal, tenant, name)
    access = services.host.data_plane(row.tenant, row.region)
    return EnvironmentDataPlane(
        access, row.outputs or {}, int(row.config.get("status_ttl_days", 30))
    )


@router.get(
    "/files",
    response_model=FilePagePublic,
    response_model_exclude_none=True,
    responses=error_responses(404, 409),
    summary="The environment's files, newest first, with counts by status",
)
def list_files(
    tenant: str,
    name: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
    status: Annotated[FileStatus | None, Query(description="Only files in this status")] = None,
    key: Annotated[str | None, Query(description="Only versions of this object key")] = None,
    canary: Annotated[
        bool,
        Query(
            description="List only canary files (the uploads of verified rollouts, under "
            "incoming/.canary/) instead of ordinary ones; canaries are never in the default "
            "listing or its counts"
        ),
    ] = False,
    limit: Limit = 50,
    cursor: Annotated[
        str | None, Query(pattern=r"^\d{1,9}$", description="From nextCursor")
    ] = None,
) -> FilePagePublic:
    offset = int(cursor or 0)
    page = _data_plane(services, service, principal, tenant, name).files(
        status=status, key=key, limit=limit, offset=offset, canary=canary
    )
    following = offset + limit
    return FilePagePublic(
        items=[FileRecord.model_validate(item) for item in page.items],
        counts=page.counts,
        total=page.total,
        limit=limit,
        offset=offset,
        next_cursor=str(following) if following < page.total else None,
        truncated=page.truncated,
    )


# A day: beyond it the table scan says more about the table than about the last hours.
MAX_STATS_MINUTES = 24 * 60


def _latency(latency: Latency) -> LatencyPublic:
    return LatencyPublic(**asdict(latency))


# Before /files/{file_id}, which would take "stats" for a file id.
@router.get(
    "/files/stats",
    response_model=FileStatsPublic,
    responses=error_responses(404, 409, 422),
    summary="Files per minute by final status, and upload→COMPLETED latency percentiles",
)
def file_stats(
    tenant: str,
    name: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_STATS_MINUTES, description="The window")] = 60,
) -> FileStatsPublic:
    plane = _data_plane(services, service, principal, tenant, name)
    stats, truncated = plane.stats(services.scheduler.clock(), minutes)
    return FileStatsPublic(
        minutes=minutes,
        bucket_minutes=stats.bucket_minutes,
        start=stats.start,
        end=stats.end,
        totals=stats.totals,
        received=stats.received,
        latency=_latency(stats.latency),
        buckets=[
            FileStatsBucket(
                at=bucket.start,
                counts=bucket.counts,
                received=bucket.received,
                latency=_latency(bucket.latency),
            )
            for bucket in stats.buckets
        ],
        truncated=truncated,
    )


@router.get(
    "/files/{file_id}",
    response_model=FileRecord,
    response_model_exclude_none=True,
    responses=error_responses(404, 409, 422),
    summary="One file's status, with its per-symbol results when known",
)
def get_file(
    tenant: str,
    name: str,
    file_id: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
) -> FileRecord:
    item = _data_plane(services, service, principal, tenant, name).file(file_id)
    return FileRecord.model_validate(item)


@router.post(
    "/files/{file_id}/retry",
    status_code=202,
    response_model=FileRecord,
    response_model_exclude_none=True,
    responses=error_responses(404, 409, 422),
    summary="Start a new attempt of a FAILED file",
)
def retry_file(
    tenant: str,
    name: str,
    file_id: str,
    request: Request,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
) -> FileRecord:
    audit_target(request, tenant, f"{tenant}/{name}/files/{file_id}")
    item = _data_plane(services, service, principal, tenant, name).retry(file_id)
    return FileRecord.model_validate(item)


@router.get(
    "/dlq",
    response_model=DeadLetterReport,
    responses=error_responses(404, 409),
    summary="Depth of every dead-letter queue, and a peek at up to 10 messages of each",
    description="FIFO queues give their oldest messages first: the peek shows the head of each "
    "queue (newest first among those), without consuming anything.",
)
def dead_letters(
    tenant: str,
    name: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
) -> DeadLetterReport:
    queues = _data_plane(services, service, principal, tenant, name).dead_letters()
    return DeadLetterReport(
        queues=[
            DeadLetterQueuePublic(
                name=queue.name,
                depth=queue.depth,
                messages=[DeadLetterPublic(**asdict(letter)) for letter in queue.messages],
            )
            for queue in queues
        ]
    )


@router.post(
    "/dlq/ingest/redrive",
    response_model=RedriveResult,
    responses=error_responses(404, 409),
    summary="Move the ingest DLQ's messages back to the ingest queue",
)
def redrive_ingest(
    tenant: str,
    name: str,
    request: Request,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
) -> RedriveResult:
    audit_target(request, tenant, f"{tenant}/{name}/dlq/ingest")
    moved = _data_plane(services, service, principal, tenant, name).redrive_ingest()
    return RedriveResult(moved=moved)
