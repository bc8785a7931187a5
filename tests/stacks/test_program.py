"""The inline program: explicit provider, the contract's stack outputs, the resource count."""

from __future__ import annotations

from collections import Counter

import pytest

from stacks import program
from stacks.config import PipelineConfig
from stacks.pipeline import TYPE_TOKEN
from stacks.spec import inventory_counts
from tests.stacks.conftest import PANDAS_LAYER
from tests.stacks.mocks import AWS_PROVIDER_TYPE, Deployment, deploy

# architecture.md §2, "Stack outputs (contract)", copied here on purpose: changing the contract must
# take a deliberate edit of this test too.
CONTRACT_OUTPUTS = (
    "bucketName",
    "ingestQueueUrl",
    "ingestDlqUrl",
    "validatorDlqUrl",
    "processorDlqUrl",
    "aggregatorDlqUrl",
    "statusTableName",
    "stateMachineArn",
    "validatorFunctionName",
    "processorFunctionName",
    "aggregatorFunctionName",
    "ingestFunctionName",
    "statusFunctionName",
    "apiEndpoint",
    "alarmTopicArn",
)


def test_stack_outputs_are_the_contracts() -> None:
    assert program.STACK_OUTPUTS == CONTRACT_OUTPUTS


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_program_exports_exactly_the_stack_outputs_as_strings(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    assert sorted(deployment.exports) == sorted(CONTRACT_OUTPUTS)
    for name, value in deployment.exports.items():
        assert isinstance(value, str), name
        assert value, name


def test_outputs_point_at_the_registered_resources(deployment: Deployment) -> None:
    exports = deployment.exports
    assert exports["bucketName"] == deployment.one("aws:s3/bucket:Bucket").outputs["bucket"]
    assert exports["statusTableName"] == deployment.one("aws:dynamodb/table:Table").outputs["name"]
    machine = deployment.one("aws:sfn/stateMachine:StateMachine")
    assert exports["stateMachineArn"] == machine.outputs["arn"]
    queues = {q.inputs["name"]: q.outputs["url"] for q in deployment.of_type("aws:sqs/queue:Queue")}
    assert exports["ingestQueueUrl"] == queues["p-acme-dev-ingest.fifo"]
    assert exports["ingestDlqUrl"] == queues["p-acme-dev-ingest-dlq.fifo"]
    for stage in ("validator", "processor", "aggregator"):
        assert exports[f"{stage}DlqUrl"] == queues[f"p-acme-dev-{stage}-dlq.fifo"]
        assert exports[f"{stage}FunctionName"] == f"p-acme-dev-{stage}"
    assert exports["ingestFunctionName"] == "p-acme-dev-ingest"
    assert exports["statusFunctionName"] == "p-acme-dev-status-api"
    functions = {f.outputs["name"] for f in deployment.of_type("aws:lambda/function:Function")}
    assert {exports[f"{fn}FunctionName"] for fn in ("ingest", "validator", "status")} <= functions


def test_component_registers_the_outputs_it_exports(deployment: Deployment) -> None:
    (component,) = [r for r in deployment.resources if r.type == TYPE_TOKEN]
    assert deployment.registered_outputs[component.urn] == deployment.exports


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_expected_resource_count_is_what_an_up_registers(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    # The stack resource, then everything else the program registered.
    assert program.expected_resource_count(config) == 1 + len(deployment.resources)
    children = Counter(r.type for r in deployment.resources if r.type.startswith("aws:"))
    assert dict(children) == inventory_counts(config)
    assert [r.type for r in deployment.resources if not r.type.startswith("aws:")] == [
        AWS_PROVIDER_TYPE,
        TYPE_TOKEN,
    ]


def test_region_never_comes_from_the_ambient_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pulumi-aws falls back to these when the provider is given no region.
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    config = PipelineConfig(
        tenant="acme", environment="dev", region="eu-central-1", pandas_layer_arn=PANDAS_LAYER
    )
    deployment = deploy(config)
    (provider,) = [r for r in deployment.resources if r.type == AWS_PROVIDER_TYPE]
    assert provider.inputs["region"] == "eu-central-1"
    assert ":eu-central-1:" in deployment.exports["stateMachineArn"]
