"""The one error hierarchy of the service, and its one mapping to HTTP.

Each error knows its HTTP status and error code; `install` maps every error that leaves the
service to `{"error": <code>, "detail": <text>}` once.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from provisioner.schemas import ErrorBody, ValidationErrorBody

log = structlog.get_logger(__name__)


class ProvisionerError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ProvisionerError):
    status_code = 404
    code = "not_found"


class ConflictError(ProvisionerError):
    status_code = 409
    code = "conflict"


class AuthenticationError(ProvisionerError):
    status_code = 401
    code = "unauthorized"


class PermissionDeniedError(ProvisionerError):
    status_code = 403
    code = "forbidden"


class QuotaExceededError(PermissionDeniedError):
    """The request would take the tenant past its quota; `detail` says which limit."""

    code = "quota_exceeded"


class InvalidRequestError(ProvisionerError):
    status_code = 422
    code = "invalid_request"


class ValidationFailed(InvalidRequestError):
    """422 with one entry per invalid field."""

    code = "validation_error"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        )


class UnavailableError(ProvisionerError):
    status_code = 503
    code = "unavailable"


# Engine failures are recorded on the operation (FAILED with the reason), never tracebacks.


class EngineError(ProvisionerError):
    """An engine operation failed; `detail` is safe to show (no secrets, no CLI dump)."""

    code = "engine_error"


class EngineUnavailableError(EngineError):
    """The engine cannot run at all (e.g. the Pulumi CLI is not installed)."""

    status_code = 503
    code = "engine_unavailable"


class StackExistsError(EngineError):
    status_code = 409
    code = "stack_exists"


class StackNotFoundError(EngineError):
    status_code = 404
    code = "stack_not_found"


class ConcurrentUpdateError(EngineError):
    status_code = 409
    code = "concurrent_update"


class OperationCancelledError(EngineError):
    code = "cancelled"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
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


def _body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


async def _provisioner_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvisionerError)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = exc.errors
    elif exc.status_code == 422:
        extra["errors"] = []
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return JSONResponse(
        _body(exc.code, exc.detail, **extra), status_code=exc.status_code, headers=headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    detail = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}"
        for error in errors
    )
    return JSONResponse(_body("validation_error", detail, errors=errors), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first matching route's methods; a path served by several
        # routes (GET and POST /environments) must list them all.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse(_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the app serves at this path, from its own route table (the OpenAPI
    document lists every route, whichever router holds it)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("http.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return JSONResponse(_body("internal_error", "internal server error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProvisionerError, _provisioner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
