"""FastAPI dependencies as `Annotated` aliases: the app's services, the session, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from provisioner.auth import ApiKeys, Principal
from provisioner.environments import EnvironmentService
from provisioner.errors import AuthenticationError, PermissionDeniedError
from provisioner.registry.api_keys import ApiKeyRepository
from provisioner.registry.database import Database
from provisioner.runner import OperationRunner
from provisioner.services import Services
from provisioner.settings import Settings


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


def _settings(services: ServicesDep) -> Settings:
    return services.settings


def _database(services: ServicesDep) -> Database:
    return services.database


def _runner(services: ServicesDep) -> OperationRunner:
    return services.runner


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]
RunnerDep = Annotated[OperationRunner, Depends(_runner)]


def _session(database: DatabaseDep) -> Iterator[Session]:
    with database.session() as session:
        yield session


# Closed (and committed) when the route returns, before the response is sent: nothing touches
# the registry after the client has its answer, so a shutdown right after it is clean.
SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _principal(
    request: Request,
    database: DatabaseDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <API key>'")
    with database.session() as session:
        principal = ApiKeys(ApiKeyRepository(session)).authenticate(presented.strip())
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def _admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this route needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(_admin)]


def _environment_service(session: SessionDep, services: ServicesDep) -> EnvironmentService:
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
