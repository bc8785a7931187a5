"""`/local/{tenant}/{name}/prod/…`: a local environment's status API, served by this service.

On AWS the status API is API Gateway (REST, stage `prod`) proxying to the status function; the
emulator cannot serve AWS_PROXY integrations, so the service plays API Gateway here: it turns
the request into the same REST proxy event and invokes the environment's real status function
(`handlers.status_api`) in its local runtime. Unlike on AWS, where IAM signs requests, it takes
the provisioner's own API keys, scoped to the tenant like every other route.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from provisioner.auth import Principal
from provisioner.deps import PrincipalDep, ServicesDep
from provisioner.emulator.lambda_dispatch import DEFAULT_ACCOUNT_ID
from provisioner.engines.local import API_PREFIX, LocalHost
from provisioner.environments import EnvironmentService, environment_config
from provisioner.errors import NotFoundError, UnavailableError
from provisioner.routes.responses import errors
from provisioner.services import Services
from stacks.config import PipelineConfig
from stacks.spec import API_STAGE

router = APIRouter(prefix=API_PREFIX, tags=["local status API"])

# The REST API's resources (stacks.pipeline): path pattern → resource template.
_RESOURCES: Final = (
    (re.compile(r"/status/(?P<fileId>[^/]+)"), "/status/{fileId}"),
    (re.compile(r"/files"), "/files"),
)


@router.get(
    "/{tenant}/{name}/" + API_STAGE + "/{path:path}",
    responses={200: {"description": "The status function's response"}, **errors(404)},
    summary="A local environment's status API (GET /status/{fileId}, GET /files?key=…)",
)
async def local_status_api(
    tenant: str,
    name: str,
    path: str,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    host = services.host
    if not isinstance(host, LocalHost):
        raise NotFoundError("the local status API exists only with the local engine")
    config = await asyncio.to_thread(_environment, services, principal, tenant, name)
    event = _rest_proxy_event(request, "/" + path, tenant)
    payload = json.dumps(event).encode()
    result = await asyncio.to_thread(host.invoke, config, "status", payload)
    if not result.ok:
        raise UnavailableError(
            f"the status function failed: {result.error_type}: {result.error_message}"
        )
    reply: dict[str, Any] = result.value()
    headers = {k: v for k, v in (reply.get("headers") or {}).items() if isinstance(v, str)}
    return Response(
        content=reply.get("body") or "",
        status_code=int(reply.get("statusCode", 200)),
        headers=headers,
    )


def _environment(
    services: Services, principal: Principal, tenant: str, name: str
) -> PipelineConfig:
    with services.database.session(readonly=True) as session:
        row = EnvironmentService(session, services.settings, services.engine_name).get_visible(
            principal, tenant, name
        )
        return environment_config(row)


def _rest_proxy_event(request: Request, path: str, tenant: str) -> dict[str, Any]:
    """The API Gateway REST (v1) proxy event for this request, as API Gateway builds it."""
    resource, path_parameters = None, None
    for pattern, template in _RESOURCES:
        match = pattern.fullmatch(path)
        if match:
            resource, path_parameters = template, match.groupdict() or None
            break
    if resource is None:
        raise NotFoundError(f"no resource {path} in the status API")
    query = request.query_params
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": dict(query) or None,
        "multiValueQueryStringParameters": {k: query.getlist(k) for k in query} or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "GET",
            "path": f"/{API_STAGE}{path}",
            "stage": API_STAGE,
            "requestId": request_id,
            "accountId": DEFAULT_ACCOUNT_ID,
            "apiId": f"local-{tenant}",
            "identity": {"sourceIp": request.client.host if request.client else "127.0.0.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }
