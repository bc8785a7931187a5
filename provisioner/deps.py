"""FastAPI dependencies as `Annotated` aliases: the app's services, the session, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from provisioner.auth.repository import ApiKeyRepository
from provisioner.auth.service import ApiKeys, Principal, hash_key
from provisioner.db import Database
from provisioner.environments.service import EnvironmentService
from provisioner.errors import AuthenticationError, PermissionDeniedError
from provisioner.operations.runner import OperationRunner
from provisioner.schemas import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from provisioner.state import AppState

# Cheap dependencies are coroutines: a plain function would cost a trip to the threadpool
# on every request.


async def _app_state(request: Request) -> AppState:
    services: AppState = request.app.state.services
    return services


AppStateDep = Annotated[AppState, Depends(_app_state)]


async def _database(services: AppStateDep) -> Database:
    return services.database


async def _runner(services: AppStateDep) -> OperationRunner:
    return services.runner


DatabaseDep = Annotated[Database, Depends(_database)]
RunnerDep = Annotated[OperationRunner, Depends(_runner)]


def _session(request: Request, database: DatabaseDep) -> Iterator[Session]:
    # Reads (GET/HEAD) never write, so they need not queue for SQLite's write lock.
    with database.session(readonly=request.method in ("GET", "HEAD")) as session:
        yield session


# Closed (and committed) when the route returns, before the response is sent: nothing touches
# the registry after the client has its answer, so a shutdown right after it is clean.
SessionDep = Annotated[Session, Depends(_session, scope="function")]


# Declared as a security scheme, so the OpenAPI document (and /docs' Authorize button) know
# every route takes `Authorization: Bearer <API key>`; the check itself is ours.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


async def _principal(
    request: Request,
    services: AppStateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    if credentials is None or not credentials.credentials.strip():
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <API key>'")
    presented = credentials.credentials.strip()
    key_hash = hash_key(presented)
    principal = await services.recent_keys.principal(
        key_hash, lambda: run_in_threadpool(_authenticate, services.database, presented)
    )
    request.state.principal = principal
    return principal


def _authenticate(database: Database, presented: str) -> Principal:
    with database.session(readonly=True) as session:
        principal, stale = ApiKeys(ApiKeyRepository(session)).authenticate(presented)
    if stale:
        with database.session() as session:
            ApiKeyRepository(session).touch(principal.key_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


async def caller(request: Request, services: AppState) -> Principal:
    """The principal `PrincipalDep` resolves, for a route that resolves it without the
    dependency tree (provisioner.environments.endpoints' listing): the same checks, the same
    errors, `request.state.principal` set."""
    return await _principal(request, services, await _bearer(request))


async def _admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this route needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(_admin)]


async def _environment_service(session: SessionDep, services: AppStateDep) -> EnvironmentService:
    return EnvironmentService(session, services.settings, services.engine_name)


EnvironmentServiceDep = Annotated[EnvironmentService, Depends(_environment_service)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retrying with the same key returns the same operation",
    ),
]

Limit = Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX, description="Items to skip")]
