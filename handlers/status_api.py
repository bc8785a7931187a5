"""File status REST API (docs/architecture.md §2-3) behind API Gateway, with Powertools'
REST resolver.

    GET /status/{fileId}        one file version's status item  (routes: handlers.core.routes)
    GET /files?key=<object key> every version of a key, newest first

Errors are JSON `{"error": <code>, "detail": <text>}`: 400 for a malformed id or a missing key,
404 for an unknown or TTL-expired file (and unknown routes).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.core import runtime
from handlers.core.ids import is_file_id
from handlers.core.routes import STATUS_ROUTES
from handlers.core.status_model import PUBLIC_ITEM_FIELDS
from handlers.core.status_store import StatusStore

logger = Logger()
app = APIGatewayRestResolver()
ROUTES = {route.key: route for route in STATUS_ROUTES}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    return {field: item[field] for field in PUBLIC_ITEM_FIELDS if field in item}


@app.get(ROUTES["status"].resolver_path)
def get_status(fileId: str) -> dict[str, Any]:  # noqa: N803 (the route's parameter name)
    file_id = fileId
    if not is_file_id(file_id):
        raise ApiError(400, "invalid_file_id", "fileId must be 64 lowercase hex characters")
    logger.set_correlation_id(file_id)
    item = StatusStore.from_env().get(file_id)
    if item is None:
        raise ApiError(404, "not_found", f"no file with id {file_id}")
    return public_item(item)


@app.get(ROUTES["files"].resolver_path)
def list_files() -> dict[str, Any]:
    # API Gateway has already URL-decoded the query string value.
    key = app.current_event.get_query_string_value(ROUTES["files"].query[0])
    if not key:
        raise ApiError(400, "missing_key", "query parameter key (the object key) is required")
    items = StatusStore.from_env().by_object_key(key)
    if not items:
        raise ApiError(404, "not_found", "no file with this object key")
    return {"objectKey": key, "files": [public_item(item) for item in items]}


def api_error(exc: ApiError) -> Response[str]:
    return _error(exc.status, exc.code, exc.detail)


app.exception_handler(ApiError)(api_error)


@app.not_found
def route_not_found(exc: NotFoundError) -> Response[str]:
    return _error(404, "not_found", "no such route")


def _error(status: int, code: str, detail: str) -> Response[str]:
    body = json.dumps({"error": code, "detail": detail})
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime.bind_invocation(logger)
    return app.resolve(event, context)
