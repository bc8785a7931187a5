"""The status REST API: routes, IAM authorization, Lambda proxying, stage, logs and throttling."""

from __future__ import annotations

import json

import pytest

from stacks import spec
from stacks.config import PipelineConfig
from tests.stacks.mocks import (
    ACCOUNT_ID,
    API_DEPLOYMENT,
    API_INTEGRATION,
    API_METHOD,
    API_METHOD_SETTINGS,
    API_RESOURCE,
    API_STAGE,
    FUNCTION,
    LAMBDA_PERMISSION,
    LOG_GROUP,
    REST_API,
    Deployment,
    RegisteredResource,
)


def _api(deployment: Deployment) -> RegisteredResource:
    return deployment.one(REST_API)


def _status_function(deployment: Deployment, config: PipelineConfig) -> RegisteredResource:
    return deployment.named(FUNCTION, spec.names(config, ACCOUNT_ID).functions["status"])


def _paths(deployment: Deployment) -> dict[str, RegisteredResource]:
    """API resources by their full path, rebuilt from parent ids."""
    api = _api(deployment)
    by_id = {resource.id: resource for resource in deployment.of_type(API_RESOURCE)}

    def path(resource: RegisteredResource) -> str:
        assert resource.inputs["restApi"] == api.id
        parent = resource.inputs["parentId"]
        prefix = "" if parent == api.outputs["rootResourceId"] else path(by_id[parent])
        return f"{prefix}/{resource.inputs['pathPart']}"

    return {path(resource): resource for resource in by_id.values()}


def test_api_is_regional_and_named_for_the_environment(
    deployment: Deployment, config: PipelineConfig
) -> None:
    api = _api(deployment).inputs
    assert api["name"] == spec.names(config, ACCOUNT_ID).api
    assert api["endpointConfiguration"]["types"] == "REGIONAL"


def test_api_serves_status_by_id_and_files_by_key(deployment: Deployment) -> None:
    paths = _paths(deployment)
    assert set(paths) == {"/status", "/status/{fileId}", "/files"}
    methods = {
        (method.inputs["resourceId"], method.inputs["httpMethod"]): method
        for method in deployment.of_type(API_METHOD)
    }
    assert set(methods) == {
        (paths["/status/{fileId}"].id, "GET"),
        (paths["/files"].id, "GET"),
    }
    by_id = methods[(paths["/status/{fileId}"].id, "GET")].inputs
    assert by_id["requestParameters"] == {"method.request.path.fileId": True}
    by_key = methods[(paths["/files"].id, "GET")].inputs
    assert by_key["requestParameters"] == {"method.request.querystring.key": True}


def test_every_method_requires_iam_authorization(deployment: Deployment) -> None:
    methods = deployment.of_type(API_METHOD)
    assert len(methods) == 2
    for method in methods:
        assert method.inputs["authorization"] == "AWS_IAM"
        assert method.inputs["restApi"] == _api(deployment).id


def test_every_method_proxies_to_the_status_function(
    deployment: Deployment, config: PipelineConfig
) -> None:
    function = _status_function(deployment, config)
    integrations = deployment.of_type(API_INTEGRATION)
    method_routes = {
        (m.inputs["resourceId"], m.inputs["httpMethod"]) for m in deployment.of_type(API_METHOD)
    }
    assert {(i.inputs["resourceId"], i.inputs["httpMethod"]) for i in integrations} == (
        method_routes
    )
    for integration in integrations:
        assert integration.inputs["type"] == "AWS_PROXY"
        # Lambda is always invoked with POST, whatever the client's method.
        assert integration.inputs["integrationHttpMethod"] == "POST"
        assert integration.inputs["uri"] == function.outputs["invokeArn"]


def test_only_this_api_may_invoke_the_status_function(
    deployment: Deployment, config: PipelineConfig
) -> None:
    (permission,) = deployment.of_type(LAMBDA_PERMISSION)
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["function"] == _status_function(deployment, config).outputs["name"]
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    execution_arn = _api(deployment).outputs["executionArn"]
    assert permission.inputs["sourceArn"] == f"{execution_arn}/prod/GET/*"


def test_deployment_follows_every_method_and_integration(deployment: Deployment) -> None:
    api_deployment = deployment.one(API_DEPLOYMENT)
    assert api_deployment.inputs["restApi"] == _api(deployment).id
    dependencies = api_deployment.registration.dependencies
    for typ in (API_METHOD, API_INTEGRATION):
        assert all(resource.urn in dependencies for resource in deployment.of_type(typ))
    trigger = api_deployment.inputs["triggers"]["redeployment"]
    assert len(trigger) == 64


def test_deployment_trigger_changes_with_the_integration(
    deployment: Deployment, custom_deployment: Deployment
) -> None:
    # Another function (other name, region) behind the same routes: a new snapshot is needed.
    triggers = {
        d.one(API_DEPLOYMENT).inputs["triggers"]["redeployment"]
        for d in (deployment, custom_deployment)
    }
    assert len(triggers) == 2


def test_prod_stage_writes_json_access_logs(deployment: Deployment, config: PipelineConfig) -> None:
    stage = deployment.one(API_STAGE).inputs
    assert stage["stageName"] == "prod"
    assert stage["restApi"] == _api(deployment).id
    assert stage["deployment"] == deployment.one(API_DEPLOYMENT).id
    group = deployment.named(LOG_GROUP, spec.names(config, ACCOUNT_ID).api_access_log_group)
    settings = stage["accessLogSettings"]
    # API Gateway wants the log group ARN without the ":*" suffix.
    assert settings["destinationArn"] == group.outputs["arn"]
    record = json.loads(settings["format"])
    assert record["requestId"] == "$context.requestId"
    assert record["status"] == "$context.status"
    assert record["userArn"] == "$context.identity.userArn"
    assert "\n" not in settings["format"]


@pytest.mark.parametrize(
    ("fixture", "rate", "burst"),
    [("deployment", 1000, 2000), ("custom_deployment", 250, 400)],
    ids=["default", "custom"],
)
def test_every_method_is_throttled(
    request: pytest.FixtureRequest, fixture: str, rate: int, burst: int
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    method_settings = deployment.one(API_METHOD_SETTINGS).inputs
    assert method_settings["restApi"] == _api(deployment).id
    assert method_settings["stageName"] == deployment.one(API_STAGE).outputs["stageName"]
    assert method_settings["methodPath"] == "*/*"
    settings = method_settings["settings"]
    assert settings["throttlingRateLimit"] == rate
    assert settings["throttlingBurstLimit"] == burst
    assert settings["metricsEnabled"] is True
    # Execution logs would land in a group API Gateway creates, without our retention.
    assert settings["loggingLevel"] == "OFF"


def test_endpoint_output_is_the_prod_stage_url(deployment: Deployment) -> None:
    stage = deployment.one(API_STAGE)
    assert deployment.exports["apiEndpoint"] == stage.outputs["invokeUrl"]
    assert deployment.exports["apiEndpoint"] == (
        f"https://{_api(deployment).id}.execute-api.us-east-1.amazonaws.com/prod"
    )
