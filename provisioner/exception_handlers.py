"""Every error leaves the service as `{"error": <code>, "detail": <text>}`, mapped here once."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from provisioner.errors import AuthenticationError, ProvisionerError, ValidationFailed

log = structlog.get_logger(__name__)


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
