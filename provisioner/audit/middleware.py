"""ASGI middleware: one structured log line per request, and an audit entry for every change
(any non-GET request) and every refused request, with who, what, when and the result."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.audit.models import AuditRow
from provisioner.audit.repository import AuditRepository
from provisioner.auth.service import Principal
from provisioner.db import Database, utcnow
from provisioner.logging import redactor
from stacks.config import TENANT_PATTERN

log = structlog.get_logger(__name__)

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _result(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status == 202:
        return "accepted"
    if status < 400:
        return "ok"
    if status < 500:
        return "rejected"
    return "error"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, database_getter: Any) -> None:
        self.app = app
        self._database_getter = database_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        audited = False

        async def audit(status: int) -> None:
            nonlocal audited
            audited = True
            method = scope["method"]
            state: dict[str, Any] = scope.get("state") or {}
            principal: Principal | None = state.get("principal")
            log.info(
                "http.request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                actor=principal.key_id if principal else None,
            )
            if method in _READ_METHODS and status not in (401, 403):
                return
            database: Database | None = self._database_getter()
            if database is not None:
                route = scope.get("route")
                action = f"{method} {getattr(route, 'path', scope['path'])}"
                row = _audit_row(action, status, principal, state.get("audit") or {})
                await asyncio.to_thread(_store, database, row)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Recorded before the client has its answer: the entry exists as soon as the
                # change does, and nothing is written after the response.
                await audit(status)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not audited:  # the app failed before it could answer
                await audit(status)


def _audit_row(
    action: str, status: int, principal: Principal | None, audit: dict[str, Any]
) -> AuditRow:
    return AuditRow(
        at=utcnow(),
        actor=principal.key_id if principal else "anonymous",
        scope=principal.scope if principal else None,
        tenant=audit.get("tenant") or (principal.tenant if principal else None),
        action=action,
        target=audit.get("target"),
        status_code=status,
        result=_result(status),
    )


def _store(database: Database, row: AuditRow) -> None:
    with database.session() as session:
        AuditRepository(session).add(row)


# What an identifier in an audit target may look like (tenant, name, key or operation id,
# file id); anything else is raw input and is not recorded.
_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9._:@=-]{0,127}"
_TARGET: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")


def audit_target(request: Request, tenant: str | None, target: str | None) -> None:
    """What the audit log records as this request's tenant and target: identifiers only
    (docs/architecture.md §9), since they may be the raw input of a request that fails
    validation."""
    if tenant is not None and not TENANT_PATTERN.fullmatch(tenant):
        tenant = None
    if target is not None:
        # The redactor masks anything shaped like an API key, even where an id would be.
        target = redactor.redact_text(target) if _TARGET.fullmatch(target) else None
    request.state.audit = {"tenant": tenant, "target": target}
