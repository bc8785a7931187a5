"""Shared pieces of route declarations: documented error responses, 202 handling, paging."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from provisioner.registry.tables import OperationRow
from provisioner.schemas import ErrorBody, OperationPublic, ValidationErrorBody
from provisioner.views import operation_public


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
    """What the audit log records as this request's tenant and target."""
    request.state.audit = {"tenant": tenant, "target": target}
