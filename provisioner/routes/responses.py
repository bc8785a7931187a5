"""Shared pieces of route declarations: documented error responses, 202 handling, paging."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import Query, Request, Response

from provisioner.logging import redactor
from provisioner.registry.tables import OperationRow
from provisioner.schemas import ErrorBody, OperationPublic, ValidationErrorBody
from provisioner.views import operation_public
from stacks.config import TENANT_PATTERN

# What an identifier in an audit target may look like (tenant, name, key or operation id,
# file id); anything else is raw input and is not recorded.
_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9._:@=-]{0,127}"
_TARGET: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route can give."""
    descriptions = {
        400: "The body could not be parsed",
        401: "Missing or invalid API key",
        403: "The API key's scope does not allow this",
        404: "Not found (or belongs to another tenant)",
        409: "Conflicts with the current state or an active operation",
        422: "Invalid request",
    }
    table: dict[int | str, dict[str, Any]] = {}
    for code in (401, *codes):
        model = ValidationErrorBody if code == 422 else ErrorBody
        table[code] = {"model": model, "description": descriptions[code]}
    return table


Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
# Bounded so that no value can overflow a database integer.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip")]


def accepted(operation: OperationRow, request: Request, response: Response) -> OperationPublic:
    """A 202 for a queued operation, with a Location header pointing at it."""
    response.status_code = 202
    response.headers["Location"] = str(request.url_for("get_operation", operation_id=operation.id))
    return operation_public(operation)


def audit_target(request: Request, tenant: str | None, target: str | None) -> None:
    """What the audit log records as this request's tenant and target: identifiers only
    (DESIGN §9), since they may be the raw input of a request that fails validation."""
    if tenant is not None and not TENANT_PATTERN.fullmatch(tenant):
        tenant = None
    if target is not None:
        # The redactor masks anything shaped like an API key, even where an id would be.
        target = redactor.redact_text(target) if _TARGET.fullmatch(target) else None
    request.state.audit = {"tenant": tenant, "target": target}
