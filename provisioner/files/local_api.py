"""`/local/{tenant}/{name}/prod/…`: a local environment's status API, served by this service.

The engine host answers (`EngineHost.serve_status_api`: the local engine plays API Gateway;
others have none here). Unlike on AWS, where IAM signs requests, it takes the provisioner's own
API keys, scoped to the tenant like every other route.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from provisioner.auth.service import Principal
from provisioner.config import LOCAL_API_PREFIX
from provisioner.deps import AppStateDep, PrincipalDep
from provisioner.engines.base import StatusApiRequest
from provisioner.environments.service import EnvironmentService, environment_config
from provisioner.errors import error_responses
from provisioner.state import AppState
from stacks.config import PipelineConfig
from stacks.spec import API_STAGE

router = APIRouter(prefix=LOCAL_API_PREFIX, tags=["local status API"])


@router.get(
    "/{tenant}/{name}/" + API_STAGE + "/{path:path}",
    responses={200: {"description": "The status function's response"}, **error_responses(404)},
    summary="A local environment's status API (GET /status/{fileId}, GET /files?key=…)",
)
async def local_status_api(
    tenant: str,
    name: str,
    path: str,
    request: Request,
    principal: PrincipalDep,
    services: AppStateDep,
) -> Response:
    config = await asyncio.to_thread(_environment, services, principal, tenant, name)
    status_request = StatusApiRequest(
        path="/" + path,
        query={key: request.query_params.getlist(key) for key in request.query_params},
        headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        source_ip=request.client.host if request.client else "127.0.0.1",
    )
    reply = await asyncio.to_thread(services.host.serve_status_api, config, status_request)
    return Response(content=reply.body, status_code=reply.status_code, headers=reply.headers)


def _environment(
    services: AppState, principal: Principal, tenant: str, name: str
) -> PipelineConfig:
    with services.database.session(readonly=True) as session:
        row = EnvironmentService(session, services.settings, services.engine_name).get_visible(
            principal, tenant, name
        )
        return environment_config(row)
