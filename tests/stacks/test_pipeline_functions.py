"""The five functions: code, settings, environment, log groups, roles and the SQS event source."""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pytest

from stacks import spec
from stacks.config import PipelineConfig
from stacks.pipeline import HANDLERS_DIR, handlers_archive
from tests.stacks.documents import as_list, parsed, statements
from tests.stacks.mocks import (
    ACCOUNT_ID,
    EVENT_SOURCE_MAPPING,
    FUNCTION,
    LOG_GROUP,
    PANDAS_LAYER_NAME,
    QUEUE,
    ROLE,
    ROLE_POLICY,
    SSM_PARAMETER_INVOKE,
    STATE_MACHINE,
    TABLE,
    Deployment,
    RegisteredResource,
    deploy,
)

STAGES = ("validator", "processor", "aggregator")
HANDLERS = {
    "ingest": "handlers.ingest.lambda_handler",
    "validator": "handlers.validator.lambda_handler",
    "processor": "handlers.processor.lambda_handler",
    "aggregator": "handlers.aggregator.lambda_handler",
    "status": "handlers.status_api.lambda_handler",
}
# Log delivery for vended logs (Step Functions) has no resource-level permissions.
WILDCARD_RESOURCE_ACTIONS = frozenset(
    {
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)


def _function(
    deployment: Deployment, config: PipelineConfig, fn: spec.FunctionName
) -> RegisteredResource:
    return deployment.named(FUNCTION, spec.names(config, ACCOUNT_ID).functions[fn])


def _config_of(request: pytest.FixtureRequest, fixture: str) -> PipelineConfig:
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    return config


def test_five_python313_functions_with_their_handlers(
    deployment: Deployment, config: PipelineConfig
) -> None:
    assert len(deployment.of_type(FUNCTION)) == 5
    for fn, handler in HANDLERS.items():
        function = _function(deployment, config, fn).inputs  # type: ignore[arg-type]
        assert function["runtime"] == "python3.13"
        assert function["handler"] == handler
        assert function["architectures"] == ["x86_64"]


@pytest.mark.parametrize(
    ("fixture", "memory", "timeout"),
    [("deployment", 512, 300), ("custom_deployment", 1024, 600)],
    ids=["default", "custom"],
)
def test_stage_functions_take_memory_and_timeout_from_the_config(
    request: pytest.FixtureRequest, fixture: str, memory: int, timeout: int
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config = _config_of(request, fixture)
    for stage in STAGES:
        function = _function(deployment, config, stage).inputs  # type: ignore[arg-type]
        assert (function["memorySize"], function["timeout"]) == (memory, timeout)
    # The ingest and status functions are small and fast whatever the stages need.
    assert _function(deployment, config, "ingest").inputs["memorySize"] == 256
    assert _function(deployment, config, "ingest").inputs["timeout"] == 30
    assert _function(deployment, config, "status").inputs["memorySize"] == 256
    assert _function(deployment, config, "status").inputs["timeout"] == 10


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_environment_is_what_each_handler_reads(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config = _config_of(request, fixture)
    names = spec.names(config, ACCOUNT_ID)
    state_machine_arn = deployment.one(STATE_MACHINE).outputs["arn"]
    for fn in spec.FUNCTIONS:
        variables = _function(deployment, config, fn).inputs["environment"]["variables"]
        assert variables == spec.function_environment(fn, config, names, state_machine_arn)
    table = deployment.one(TABLE).outputs["name"]
    ingest = _function(deployment, config, "ingest").inputs["environment"]["variables"]
    assert ingest["STATE_MACHINE_ARN"] == state_machine_arn
    assert ingest["STATUS_TABLE_NAME"] == table
    assert ingest["STATUS_TTL_DAYS"] == str(config.status_ttl_days)
    validator = _function(deployment, config, "validator").inputs["environment"]["variables"]
    assert float(validator["MAX_BAD_ROW_RATIO"]) == config.max_bad_row_ratio
    status = _function(deployment, config, "status").inputs["environment"]["variables"]
    assert status["STATUS_TABLE_NAME"] == table
    assert status["PIPELINE_TENANT"] == config.tenant


def test_custom_ratio_and_ttl_reach_the_functions(
    custom_deployment: Deployment, custom_config: PipelineConfig
) -> None:
    validator = _function(custom_deployment, custom_config, "validator").inputs
    assert validator["environment"]["variables"]["MAX_BAD_ROW_RATIO"] == "0.05"
    ingest = _function(custom_deployment, custom_config, "ingest").inputs
    assert ingest["environment"]["variables"]["STATUS_TTL_DAYS"] == "7"


def test_functions_use_the_regions_powertools_layer(
    deployment: Deployment, config: PipelineConfig
) -> None:
    for function in deployment.of_type(FUNCTION):
        assert function.inputs["layers"][0] == (
            "arn:aws:lambda:us-east-1:017000801446:layer:"
            "AWSLambdaPowertoolsPythonV3-python313-x86_64:27"
        )


def test_powertools_layer_can_be_overridden(
    custom_deployment: Deployment, custom_config: PipelineConfig
) -> None:
    for function in custom_deployment.of_type(FUNCTION):
        assert function.inputs["layers"][0] == custom_config.powertools_layer_arn


def test_only_the_validator_and_processor_load_the_pandas_layer(
    deployment: Deployment, config: PipelineConfig
) -> None:
    for fn in spec.FUNCTIONS:
        layers = _function(deployment, config, fn).inputs["layers"]
        if fn in ("validator", "processor"):
            assert layers[1:] == [config.pandas_layer_arn]
        else:
            assert len(layers) == 1


def test_pandas_layer_defaults_to_aws_published_arn_of_the_pinned_release() -> None:
    config = PipelineConfig(tenant="acme", environment="dev", region="eu-central-2")
    assert spec.pandas_layer_parameter(config) == (
        "/aws/service/aws-sdk-pandas/3.16.1/eu-central-2/py3.13/x86_64/layer-arn"
    )
    deployment = deploy(config)
    calls = [c for c in deployment.calls if c.token == SSM_PARAMETER_INVOKE]
    assert {c.args["name"] for c in calls} == {spec.pandas_layer_parameter(config)}
    for fn in spec.ARROW_FUNCTIONS:
        assert _function(deployment, config, fn).inputs["layers"][1] == (
            f"arn:aws:lambda:eu-central-2:336392948345:layer:{PANDAS_LAYER_NAME}:42"
        )
    assert len(_function(deployment, config, "aggregator").inputs["layers"]) == 1


def test_an_explicit_pandas_layer_is_used_without_looking_it_up(
    deployment: Deployment, config: PipelineConfig
) -> None:
    assert config.pandas_layer_arn is not None
    assert not [c for c in deployment.calls if c.token == SSM_PARAMETER_INVOKE]


# --- code ----------------------------------------------------------------------------------------


def _archive_paths(archive: pulumi.AssetArchive) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for key, asset in archive.assets.items():
        assert isinstance(asset, pulumi.FileAsset), key
        paths[key] = Path(asset.path)
    return paths


def test_functions_run_the_repositorys_handlers_package(deployment: Deployment) -> None:
    expected = {
        f"handlers/{path.relative_to(HANDLERS_DIR).as_posix()}": path
        for path in HANDLERS_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "handlers/__init__.py" in expected
    assert "handlers/core/status_model.py" in expected
    for function in deployment.of_type(FUNCTION):
        archive = function.inputs["code"]
        assert isinstance(archive, pulumi.AssetArchive)
        assert _archive_paths(archive) == expected


def test_archive_holds_only_python_sources_under_a_handlers_root(tmp_path: Path) -> None:
    package = tmp_path / "src"
    (package / "core" / "__pycache__").mkdir(parents=True)
    (package / ".hidden").mkdir()
    for name in ("__init__.py", "ingest.py", "core/__init__.py", "core/model.py"):
        (package / name).write_text("x = 1\n")
    (package / "core" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (package / "core" / "__pycache__" / "stale.py").write_text("")
    (package / ".hidden" / "secret.py").write_text("")
    (package / "notes.txt").write_text("not code")
    (package / "ingest.pyc").write_bytes(b"\0")

    archive = handlers_archive(package)

    assert list(archive.assets) == [
        "handlers/__init__.py",
        "handlers/core/__init__.py",
        "handlers/core/model.py",
        "handlers/ingest.py",
    ]
    assert _archive_paths(archive)["handlers/core/model.py"] == (package / "core/model.py")
    # Same tree, same archive: an unchanged tree does not redeploy the functions.
    assert list(handlers_archive(package).assets) == list(archive.assets)


def test_archive_requires_a_package(tmp_path: Path) -> None:
    (tmp_path / "ingest.py").write_text("")
    with pytest.raises(ValueError, match="not a Python package"):
        handlers_archive(tmp_path)


def test_every_handler_string_resolves_in_the_deployed_code(
    deployment: Deployment, config: PipelineConfig
) -> None:
    """Lambda imports `handlers.<module>` from the archive root and calls the function."""
    for fn, fn_spec in spec.function_specs(config).items():
        module, function = fn_spec.handler.rsplit(".", 1)
        key = module.replace(".", "/") + ".py"
        sources = _archive_paths(_function(deployment, config, fn).inputs["code"])
        assert key in sources, f"{fn}: {key} is not in the package"
        source = sources[key].read_text()
        assert re.search(rf"^(def {function}\(|{function} = )", source, re.MULTILINE), (
            f"{fn}: {key} defines no {function}"
        )


# --- log groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "days"), [("deployment", 7), ("custom_deployment", 14)], ids=["default", "custom"]
)
def test_every_log_group_keeps_logs_for_the_retention(
    request: pytest.FixtureRequest, fixture: str, days: int
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    names = spec.names(_config_of(request, fixture), ACCOUNT_ID)
    expected = {
        *(f"/aws/lambda/{name}" for name in names.functions.values()),
        names.state_machine_log_group,
        names.api_access_log_group,
    }
    groups = {group.inputs["name"]: group.inputs for group in deployment.of_type(LOG_GROUP)}
    assert set(groups) == expected
    assert all(group["retentionInDays"] == days for group in groups.values())


def test_each_function_logs_to_its_own_group_created_first(
    deployment: Deployment, config: PipelineConfig
) -> None:
    for fn in spec.FUNCTIONS:
        function = _function(deployment, config, fn)
        group = deployment.named(LOG_GROUP, f"/aws/lambda/{function.inputs['name']}")
        assert function.inputs["loggingConfig"]["logGroup"] == group.outputs["name"]
        # Otherwise Lambda could create the group itself, without retention.
        assert group.urn in function.registration.dependencies


# --- roles and policies --------------------------------------------------------------------------


def _role_policies(deployment: Deployment, role: RegisteredResource) -> list[RegisteredResource]:
    return [p for p in deployment.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]


def _function_policy(
    deployment: Deployment, config: PipelineConfig, fn: spec.FunctionName
) -> dict[str, object]:
    role = deployment.named(ROLE, spec.names(config, ACCOUNT_ID).function_roles[fn])
    (policy,) = _role_policies(deployment, role)
    return parsed(policy)


def test_one_role_per_function_trusting_only_lambda(
    deployment: Deployment, config: PipelineConfig
) -> None:
    names = spec.names(config, ACCOUNT_ID)
    role_arns = []
    for fn in spec.FUNCTIONS:
        role = deployment.named(ROLE, names.function_roles[fn])
        function = _function(deployment, config, fn)
        assert function.inputs["role"] == role.outputs["arn"]
        role_arns.append(role.outputs["arn"])
        (trust,) = statements(parsed(role, "assumeRolePolicy"))
        assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert trust["Action"] == "sts:AssumeRole"
    assert len(set(role_arns)) == 5


def test_every_role_has_exactly_one_inline_policy(deployment: Deployment) -> None:
    roles = deployment.of_type(ROLE)
    assert len(roles) == 6
    for role in roles:
        assert len(_role_policies(deployment, role)) == 1, role.name


def test_no_managed_policy_is_attached(deployment: Deployment) -> None:
    iam_types = {r.type for r in deployment.resources if r.type.startswith("aws:iam/")}
    assert iam_types == {ROLE, ROLE_POLICY}
    for role in deployment.of_type(ROLE):
        assert not role.inputs.get("managedPolicyArns")


def _is_wildcard_action(action: str) -> bool:
    return action == "*" or action.endswith(":*") or "*" in action.split(":", 1)[-1]


def test_no_policy_allows_a_wildcard_action(deployment: Deployment) -> None:
    for policy in deployment.of_type(ROLE_POLICY):
        for statement in statements(parsed(policy)):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert not _is_wildcard_action(action), (policy.name, action)


def test_policy_resources_are_this_environments(
    deployment: Deployment, config: PipelineConfig
) -> None:
    prefix = spec.names(config, ACCOUNT_ID).prefix
    for policy in deployment.of_type(ROLE_POLICY):
        for statement in statements(parsed(policy)):
            resources = as_list(statement["Resource"])
            if resources == ["*"]:
                # Only where AWS offers no resource-level permission.
                assert set(as_list(statement["Action"])) <= WILDCARD_RESOURCE_ACTIONS
                continue
            for resource in resources:
                assert "*" not in resource.split(prefix, 1)[0], (policy.name, resource)
                assert f":{prefix}" in resource or f"/{prefix}" in resource, (
                    policy.name,
                    resource,
                )


def _allowed(document: dict[str, object]) -> dict[str, set[str]]:
    """Action → resources it is allowed on."""
    allowed: dict[str, set[str]] = {}
    for statement in statements(document):  # type: ignore[arg-type]
        for action in as_list(statement["Action"]):
            allowed.setdefault(action, set()).update(as_list(statement["Resource"]))
    return allowed


def test_function_policies_name_the_real_resources(
    deployment: Deployment, config: PipelineConfig
) -> None:
    names = spec.names(config, ACCOUNT_ID)
    bucket_arn = deployment.one("aws:s3/bucket:Bucket").outputs["arn"]
    table_arn = deployment.one(TABLE).outputs["arn"]
    ingest_queue_arn = deployment.named(QUEUE, names.ingest_queue).outputs["arn"]
    state_machine_arn = deployment.one(STATE_MACHINE).outputs["arn"]

    ingest = _allowed(_function_policy(deployment, config, "ingest"))
    assert ingest["sqs:ReceiveMessage"] == {ingest_queue_arn}
    assert ingest["sqs:DeleteMessage"] == {ingest_queue_arn}
    assert ingest["dynamodb:PutItem"] == {table_arn}
    # Derived from the name (a dependency cycle otherwise); must equal the real ARN.
    assert ingest["states:StartExecution"] == {state_machine_arn}

    assert _allowed(_function_policy(deployment, config, "validator"))["s3:GetObject"] == {
        f"{bucket_arn}/incoming/*"
    }
    processor = _allowed(_function_policy(deployment, config, "processor"))
    assert processor["s3:PutObject"] == {f"{bucket_arn}/work/*"}
    aggregator = _allowed(_function_policy(deployment, config, "aggregator"))
    assert aggregator["s3:PutObject"] == {f"{bucket_arn}/results/*"}
    assert aggregator["dynamodb:UpdateItem"] == {table_arn}
    status = _allowed(_function_policy(deployment, config, "status"))
    assert status["dynamodb:Query"] == {table_arn, f"{table_arn}/index/*"}
    assert set(status) == {"dynamodb:GetItem", "dynamodb:Query", *_LOG_ACTIONS}

    for fn in spec.FUNCTIONS:
        group = deployment.named(LOG_GROUP, names.function_log_groups[fn]).outputs["arn"]
        allowed = _allowed(_function_policy(deployment, config, fn))
        assert allowed["logs:PutLogEvents"] == {f"{group}:*"}


_LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")


def test_functions_are_created_after_their_policy(
    deployment: Deployment, config: PipelineConfig
) -> None:
    names = spec.names(config, ACCOUNT_ID)
    for fn in spec.FUNCTIONS:
        role = deployment.named(ROLE, names.function_roles[fn])
        (policy,) = _role_policies(deployment, role)
        assert policy.urn in _function(deployment, config, fn).registration.dependencies


# --- ingest event source -------------------------------------------------------------------------


def test_ingest_function_consumes_the_ingest_queue_in_partial_batches(
    deployment: Deployment, config: PipelineConfig
) -> None:
    mapping = deployment.one(EVENT_SOURCE_MAPPING)
    names = spec.names(config, ACCOUNT_ID)
    assert (
        mapping.inputs["eventSourceArn"]
        == deployment.named(QUEUE, names.ingest_queue).outputs["arn"]
    )
    assert mapping.inputs["functionName"] == _function(deployment, config, "ingest").outputs["arn"]
    assert mapping.inputs["batchSize"] == 10
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["enabled"] is True
    # Lambda checks the role's SQS permissions when the mapping is created.
    role = deployment.named(ROLE, names.function_roles["ingest"])
    (policy,) = _role_policies(deployment, role)
    assert policy.urn in mapping.registration.dependencies
