"""The local engine plays API Gateway for an environment's status API.

On AWS the status API is API Gateway (REST, stage `prod`) proxying to the status function; the
emulator cannot serve AWS_PROXY integrations, so the service turns the request into the same
REST proxy event and invokes the environment's real status function (`handlers.status_api`) in
its local runtime.
"""

from __future__ import annotations

import uuid
from typing import Any

from handlers.core.routes import match_route
from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.engines.base import StatusApiReply, StatusApiRequest
from provisioner.errors import NotFoundError
from stacks.spec import API_STAGE


def rest_proxy_event(request: StatusApiRequest, tenant: str) -> dict[str, Any]:
    """The API Gateway REST (v1) proxy event for this request, as API Gateway builds it."""
    path = request.path
    # The same route table API Gateway's resources are built from (handlers.core.routes).
    matched = match_route(path)
    if matched is None:
        raise NotFoundError(f"no resource {path} in the status API")
    route, parameters = matched
    resource, path_parameters = route.resource, parameters or None
    headers = dict(request.headers)
    query = {k: v for k, v in request.query.items() if v}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        # Like Starlette's QueryParams: the single-value view keeps a repeated key's last value.
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "GET",
            "path": f"/{API_STAGE}{path}",
            "stage": API_STAGE,
            "requestId": str(uuid.uuid4()),
            "accountId": MOTO_ACCOUNT_ID,
            "apiId": f"local-{tenant}",
            "identity": {"sourceIp": request.source_ip},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def proxy_reply(reply: dict[str, Any]) -> StatusApiReply:
    """The HTTP answer in a Lambda proxy integration's result."""
    headers = {k: v for k, v in (reply.get("headers") or {}).items() if isinstance(v, str)}
    return StatusApiReply(
        status_code=int(reply.get("statusCode", 200)),
        headers=headers,
        body=reply.get("body") or "",
    )
