"""Rules every resource follows: tags, names, parent, provider, destroyability, no deprecations."""

from __future__ import annotations

import importlib
import inspect
import keyword
from functools import cache

import pytest

from stacks import spec
from stacks.config import PipelineConfig
from stacks.pipeline import TYPE_TOKEN
from tests.stacks.mocks import (
    ACCOUNT_ID,
    AWS_PROVIDER_TYPE,
    BUCKET,
    LOG_GROUP,
    Deployment,
)


@cache
def _aws_class(token: str) -> type:
    """pulumi-aws's class for a type token, e.g. aws:s3/bucket:Bucket → pulumi_aws.s3.Bucket."""
    package, module_path, class_name = token.split(":")
    assert package == "aws", token
    module = module_path.split("/")[0]
    module = f"{module}_" if keyword.iskeyword(module) else module
    cls: type = getattr(importlib.import_module(f"pulumi_aws.{module}"), class_name)
    return cls


@cache
def _is_taggable(token: str) -> bool:
    """Whether the resource type takes `tags`.

    Read from the installed SDK rather than listed by hand, so a resource type added to the
    component cannot escape the tag check.
    """
    init = _aws_class(token)._internal_init  # type: ignore[attr-defined]
    return "tags" in inspect.signature(init).parameters


@cache
def _deprecated_inputs(token: str) -> frozenset[str]:
    """Inputs pulumi-aws marks deprecated on a resource type, spelled as the engine gets them."""
    deprecated = set()
    for attribute in vars(_aws_class(token)).values():
        if isinstance(attribute, property) and attribute.fget is not None:
            marks = attribute.fget.__dict__
            if "_pulumi_deprecated_callable" in marks:
                deprecated.add(marks.get("_pulumi_name", attribute.fget.__name__))
    return frozenset(deprecated)


def _aws_resources(deployment: Deployment) -> list[str]:
    return sorted({r.type for r in deployment.resources if r.type.startswith("aws:")})


def test_taggable_types_are_found_from_pulumi_aws(deployment: Deployment) -> None:
    taggable = {typ for typ in _aws_resources(deployment) if _is_taggable(typ)}
    # Guards the introspection itself: these all take tags, these do not.
    assert {
        BUCKET,
        LOG_GROUP,
        "aws:sqs/queue:Queue",
        "aws:dynamodb/table:Table",
        "aws:lambda/function:Function",
        "aws:iam/role:Role",
        "aws:sfn/stateMachine:StateMachine",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:apigateway/restApi:RestApi",
        "aws:apigateway/stage:Stage",
        "aws:lambda/eventSourceMapping:EventSourceMapping",
    } <= taggable
    assert "aws:iam/rolePolicy:RolePolicy" not in taggable
    assert "aws:s3/bucketPolicy:BucketPolicy" not in taggable


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_every_taggable_resource_carries_the_environments_tags(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    tagged = [r for r in deployment.resources if r.type.startswith("aws:") and _is_taggable(r.type)]
    assert len(tagged) >= 30
    for resource in tagged:
        assert resource.inputs.get("tags") == config.resource_tags(), resource.name


def test_tags_include_ours_and_the_callers(deployment: Deployment) -> None:
    tags = deployment.one(BUCKET).inputs["tags"]
    assert tags == {
        "Environment": "dev",
        "Team": "acme",
        "Tenant": "acme",
        "ManagedBy": "market-data-provisioner",
        "CostCenter": "42",
        "Desk": "equities/eu",
    }


def test_custom_team_is_tagged(custom_deployment: Deployment) -> None:
    assert custom_deployment.one(BUCKET).inputs["tags"]["Team"] == "quant"


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_every_physical_name_starts_with_the_environment_prefix(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    prefix = f"p-{config.tenant}-{config.environment}"
    named = 0
    for resource in deployment.resources:
        if not resource.type.startswith("aws:"):
            continue
        name = resource.inputs.get("bucket" if resource.type == BUCKET else "name")
        if name is None:
            continue
        named += 1
        if resource.type == LOG_GROUP:
            # AWS fixes the path; the environment's name is its last meaningful segment.
            assert f"/{prefix}" in name, name
            assert name.startswith(("/aws/lambda/", "/aws/vendedlogs/states/", "/aws/apigateway/"))
        elif resource.type == "aws:kms/alias:Alias":
            assert name.startswith(f"alias/{prefix}-"), name
        else:
            assert name.startswith(f"{prefix}-"), (resource.type, name)
    # Every bucket, queue, table, function, role, policy, log group, rule, machine, API, key
    # alias, alarm topic and alarm.
    assert named == 1 + 5 + 1 + 5 + 6 + 6 + 7 + 1 + 1 + 1 + 1 + 1 + 5


def test_physical_names_match_the_spec(deployment: Deployment, config: PipelineConfig) -> None:
    names = spec.names(config, ACCOUNT_ID)
    registered = {
        r.inputs.get("bucket" if r.type == BUCKET else "name")
        for r in deployment.resources
        if r.type.startswith("aws:")
    }
    expected = {
        names.bucket,
        names.ingest_queue,
        names.ingest_dlq,
        *names.stage_dlqs.values(),
        names.status_table,
        names.state_machine,
        names.state_machine_role,
        *names.functions.values(),
        *names.function_roles.values(),
        names.ingest_rule,
        names.api,
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
        names.alarm_topic,
        names.alarm_key_alias,
        *names.alarms.values(),
    }
    assert expected <= registered


def test_every_resource_is_a_child_of_the_component(deployment: Deployment) -> None:
    (component,) = [r for r in deployment.resources if r.type == TYPE_TOKEN]
    assert component.registration.parent == deployment.stack.urn
    children = [r for r in deployment.resources if r.type.startswith("aws:")]
    assert children
    for child in children:
        assert child.registration.parent == component.urn, child.name


def test_every_resource_and_invoke_uses_the_explicit_provider(deployment: Deployment) -> None:
    (provider,) = [r for r in deployment.resources if r.type == AWS_PROVIDER_TYPE]
    reference = f"{provider.urn}::{provider.id}"
    for resource in deployment.resources:
        if resource.type.startswith("aws:"):
            assert resource.registration.provider == reference, resource.name
    assert deployment.calls
    assert all(call.provider == reference for call in deployment.calls)


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_provider_is_pinned_to_the_environments_region(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    (provider,) = [r for r in deployment.resources if r.type == AWS_PROVIDER_TYPE]
    assert provider.inputs["region"] == config.region


def test_resources_live_in_the_environments_region(custom_deployment: Deployment) -> None:
    arns = [
        r.outputs["arn"]
        for r in custom_deployment.resources
        if "arn" in r.outputs and not r.type.startswith(("aws:iam/", "aws:s3/"))
    ]
    assert arns
    assert all(":eu-west-1:" in arn for arn in arns)


def test_nothing_is_protected_or_retained(deployment: Deployment) -> None:
    assert deployment.stack.protect is False
    for resource in deployment.resources:
        assert resource.registration.protect is False, resource.name
        assert resource.registration.retain_on_delete is False, resource.name


def test_no_deprecated_argument_is_used(deployment: Deployment) -> None:
    # Guards the introspection: v7 deprecates the bucket's inline ACL and versioning.
    assert {"acl", "versioning"} <= _deprecated_inputs(BUCKET)
    for resource in deployment.resources:
        if resource.type.startswith("aws:"):
            used = set(resource.inputs) & _deprecated_inputs(resource.type)
            assert not used, (resource.type, used)
    # Nested: the table's indexes use key schemas, not the deprecated hash/range keys.
    for index in deployment.one("aws:dynamodb/table:Table").inputs["globalSecondaryIndexes"]:
        assert not {"hashKey", "rangeKey"} & set(index), index


def test_program_logs_no_warning(deployment: Deployment) -> None:
    """Pulumi warns through the engine, e.g. when an Output is formatted into a string."""
    warnings = [m.getMessage() for m in deployment.engine_messages if m.levelname != "DEBUG"]
    assert warnings == []
