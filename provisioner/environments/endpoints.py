"""`/environments`: create, list, show, change and destroy pipeline environments."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from provisioner.audit.middleware import audit_target
from provisioner.auth.service import Principal
from provisioner.deps import (
    AppStateDep,
    EnvironmentServiceDep,
    IdempotencyKey,
    Limit,
    Offset,
    PrincipalDep,
    RunnerDep,
    caller,
)
from provisioner.engines.base import OperationKind
from provisioner.environments.listing import (
    DEFAULT_LIMIT,
    TEMPLATE_FILTER_MAX,
    ListingQuery,
    page_json,
    plain_query,
)
from provisioner.environments.models import EnvironmentState
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.schemas import (
    EnvironmentCreate,
    EnvironmentPublic,
    EnvironmentUpdate,
    FleetView,
    environment_public,
)
from provisioner.environments.service import EnvironmentService, request_fingerprint
from provisioner.errors import error_responses
from provisioner.monitoring.repository import HealthRepository
from provisioner.operations.models import OperationRow
from provisioner.operations.runner import OperationRunner
from provisioner.operations.schemas import OperationPublic, accepted, operation_public
from provisioner.schemas import Page
from provisioner.state import AppState

router = APIRouter(prefix="/environments", tags=["environments"])


def _start_operation(
    request: Request,
    response: Response,
    principal: Principal,
    service: EnvironmentService,
    runner: OperationRunner,
    idempotency_key: str | None,
    *,
    tenant: str,
    name: str,
    payload: Mapping[str, Any],
    start: Callable[[str], OperationRow],
) -> OperationPublic:
    """What every operation-starting route does around `start(fingerprint)`: audit target,
    idempotency, commit before the runner looks, a 202 with Location."""
    audit_target(request, tenant, f"{tenant}/{name}")
    fingerprint = request_fingerprint(request.method, request.url.path, payload)
    operation = service.idempotent(
        principal, idempotency_key, fingerprint, lambda: start(fingerprint)
    )
    service.session.commit()
    runner.wake()
    return accepted(operation, request, response)


@router.post(
    "",
    status_code=202,
    response_model=OperationPublic,
    responses=error_responses(400, 403, 409, 422),
    summary="Create (or retry, or re-create) an environment",
)
def create_environment(
    body: EnvironmentCreate,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    runner: RunnerDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationPublic:
    return _start_operation(
        request,
        response,
        principal,
        service,
        runner,
        idempotency_key,
        tenant=body.tenant,
        name=body.name,
        payload=body.model_dump(mode="json"),
        start=lambda fingerprint: service.create(principal, body, idempotency_key, fingerprint),
    )


async def list_environments(
    principal: PrincipalDep,
    services: AppStateDep,
    tenant: Annotated[str | None, Query(description="Only this tenant")] = None,
    state: Annotated[EnvironmentState | None, Query(description="Only this state")] = None,
    template: Annotated[
        str | None,
        Query(max_length=TEMPLATE_FILTER_MAX, description="Only environments on this template"),
    ] = None,
    outdated: Annotated[
        bool | None, Query(description="Only outdated (true) or current (false) environments")
    ] = None,
    drifted: Annotated[
        bool | None,
        Query(description="Only environments whose last drift check found drift (true) or not"),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Response:
    query = ListingQuery(
        tenant=tenant,
        state=state,
        template=template,
        outdated=outdated,
        drifted=drifted,
        limit=limit,
        offset=offset,
    )
    return await _environment_page(principal, services, query)


async def _environment_page(
    principal: Principal, services: AppState, query: ListingQuery
) -> Response:
    tenant = query.tenant
    if principal.tenant is not None:
        if tenant is not None and tenant != principal.tenant:
            return Response(page_json([], 0, query.limit, query.offset), media_type=_JSON)
        tenant = principal.tenant

    def render() -> bytes:
        with services.database.session(readonly=True) as session:
            return services.environment_pages.render(
                EnvironmentRepository(session),
                tenant=tenant,
                state=query.state,
                template=query.template,
                outdated=query.outdated,
                drifted=query.drifted,
                code_version=services.code_version,
                extras=services.host.environment_extras(),
                limit=query.limit,
                offset=query.offset,
            )

    # The page is rendered here (provisioner.environments.listing), already as the response
    # model would serialise it: one trip to the threadpool for the whole request.
    async with services.environment_pages.renders:
        page = await run_in_threadpool(render)
    return Response(page, media_type=_JSON)


class _ListingRoute(APIRoute):
    """The route as declared (its OpenAPI operation, its 422s), with a shorter way for the
    usual request: a query in its plainest forms (`plain_query`) and the caller resolved as
    `PrincipalDep` resolves it, without FastAPI's dependency tree and parameter validation,
    which cost more CPU than the page itself (README, `bench.api`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handle(request: Request) -> Response:
            query = plain_query(request.query_params.multi_items())
            if query is None:
                return await declared(request)
            services: AppState = request.app.state.services
            return await _environment_page(await caller(request, services), services, query)

        return handle


_JSON = "application/json"
router.add_api_route(
    "",
    list_environments,
    methods=["GET"],
    response_model=Page[EnvironmentPublic],
    responses=error_responses(),
    route_class_override=_ListingRoute,
)


def _fleet_view(service: EnvironmentService, services: AppState, templates: list[str]) -> FleetView:
    # One query for the latest versions of every template on the page.
    latest = service.templates.templates.latest_versions(templates)
    return FleetView(latest_versions=latest, code_version=services.code_version)


@router.get("/{tenant}/{name}", response_model=EnvironmentPublic, responses=error_responses(404))
def get_environment(
    tenant: str,
    name: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    services: AppStateDep,
) -> EnvironmentPublic:
    row = service.get_visible(principal, tenant, name)
    last = service.operations.get(row.last_operation_id) if row.last_operation_id else None
    fleet = _fleet_view(service, services, [row.template_name])
    health = HealthRepository(service.session).get(row.id)
    return environment_public(row, last, services.host.environment_extras(), fleet, health)


@router.patch(
    "/{tenant}/{name}",
    status_code=202,
    response_model=OperationPublic,
    responses={
        **error_responses(400, 403, 404, 409, 422),
        200: {
            "model": EnvironmentPublic,
            "description": "Only metadata changed (expiresAt, ttlMinutes, protected): no operation",
        },
    },
    summary="Change configuration, tags or template (202), or only metadata (200)",
)
def update_environment(
    tenant: str,
    name: str,
    body: EnvironmentUpdate,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    runner: RunnerDep,
    services: AppStateDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationPublic | JSONResponse:
    if not body.changes_infrastructure:
        audit_target(request, tenant, f"{tenant}/{name}")
        row = service.get_visible(principal, tenant, name)
        service.update_metadata(principal, row, body)
        last = service.operations.get(row.last_operation_id) if row.last_operation_id else None
        fleet = _fleet_view(service, services, [row.template_name])
        health = HealthRepository(service.session).get(row.id)
        public = environment_public(row, last, services.host.environment_extras(), fleet, health)
        service.session.commit()
        return JSONResponse(public.model_dump(mode="json", by_alias=True), status_code=200)
    return _start_operation(
        request,
        response,
        principal,
        service,
        runner,
        idempotency_key,
        tenant=tenant,
        name=name,
        payload=body.model_dump(mode="json"),
        start=lambda fingerprint: service.update(
            principal, tenant, name, body, idempotency_key, fingerprint
        ),
    )


def _operation_route(kind: OperationKind, summary: str) -> Callable[..., OperationPublic]:
    """The route of an operation that takes no body: destroy, refresh, preview."""

    def run(
        tenant: str,
        name: str,
        request: Request,
        response: Response,
        principal: PrincipalDep,
        service: EnvironmentServiceDep,
        runner: RunnerDep,
        idempotency_key: IdempotencyKey = None,
    ) -> OperationPublic:
        return _start_operation(
            request,
            response,
            principal,
            service,
            runner,
            idempotency_key,
            tenant=tenant,
            name=name,
            payload={"kind": kind},
            start=lambda fingerprint: service.run(
                principal, tenant, name, kind, idempotency_key, fingerprint
            ),
        )

    run.__name__ = f"{kind}_environment"
    run.__doc__ = summary
    return run


for _method, _path, _kind, _summary in (
    (
        "DELETE",
        "/{tenant}/{name}",
        OperationKind.DESTROY,
        "Destroy an environment (every resource, every object version)",
    ),
    (
        "POST",
        "/{tenant}/{name}/refresh",
        OperationKind.REFRESH,
        "Check for drift between the stack and what exists",
    ),
    ("POST", "/{tenant}/{name}/preview", OperationKind.PREVIEW, "Plan what an update would change"),
):
    router.add_api_route(
        _path,
        _operation_route(_kind, _summary),
        methods=[_method],
        status_code=202,
        response_model=OperationPublic,
        responses=error_responses(404, 409),
        summary=_summary,
    )


@router.get(
    "/{tenant}/{name}/operations",
    response_model=Page[OperationPublic],
    responses=error_responses(404),
    summary="The environment's operations, newest first",
)
def list_environment_operations(
    tenant: str,
    name: str,
    principal: PrincipalDep,
    service: EnvironmentServiceDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[OperationPublic]:
    row = service.get_visible(principal, tenant, name)
    rows, total = service.operations.list(environment_id=row.id, limit=limit, offset=offset)
    return Page(items=[operation_public(r) for r in rows], total=total, limit=limit, offset=offset)
