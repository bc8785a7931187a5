"""The state machine resource: type, definition, role and logging, as registered."""

from __future__ import annotations

import pytest

from stacks import spec
from stacks.config import PipelineConfig
from tests.stacks.documents import as_list, parsed, statements
from tests.stacks.mocks import (
    ACCOUNT_ID,
    FUNCTION,
    LOG_GROUP,
    QUEUE,
    ROLE,
    ROLE_POLICY,
    STATE_MACHINE,
    TABLE,
    Deployment,
)


def test_state_machine_is_standard_and_named_for_the_environment(
    deployment: Deployment, config: PipelineConfig
) -> None:
    machine = deployment.one(STATE_MACHINE).inputs
    assert machine["type"] == "STANDARD"
    assert machine["name"] == spec.names(config, ACCOUNT_ID).state_machine


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_definition_is_the_spec_for_the_deployed_resources(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    names = spec.names(config, ACCOUNT_ID)
    targets = spec.StateMachineTargets(
        status_table=deployment.one(TABLE).outputs["name"],
        functions={
            stage: deployment.named(FUNCTION, names.functions[stage]).outputs["arn"]
            for stage in spec.STAGE_FUNCTIONS
        },
        stage_dlq_urls={
            stage: deployment.named(QUEUE, names.stage_dlqs[stage]).outputs["url"]
            for stage in spec.STAGE_FUNCTIONS
        },
    )
    definition = parsed(deployment.one(STATE_MACHINE), "definition")
    assert definition == spec.state_machine_definition(
        targets, spec.RetryPolicy(), spec.execution_timeout_s(config)
    )
    # Spelled out, so that a wrong target cannot hide behind the spec's own function.
    validate = definition["States"]["Validate"]["Parameters"]["FunctionName"]
    function = names.functions["validator"]
    assert validate == f"arn:aws:lambda:{config.region}:{ACCOUNT_ID}:function:{function}"
    assert definition["States"]["RecordReceived"]["Parameters"]["TableName"] == names.status_table


def test_execution_timeout_outlasts_every_retry_of_every_stage(
    custom_deployment: Deployment, custom_config: PipelineConfig
) -> None:
    definition = parsed(custom_deployment.one(STATE_MACHINE), "definition")
    retry = spec.RetryPolicy()
    # Three stages; each runs once plus every attempt of its two retriers, each up to the
    # stage timeout.
    attempts = 1 + 2 * retry.max_attempts
    assert definition["TimeoutSeconds"] > 3 * attempts * custom_config.stage_timeout_s


def test_state_machine_logs_to_its_own_group(
    deployment: Deployment, config: PipelineConfig
) -> None:
    group = deployment.named(LOG_GROUP, spec.names(config, ACCOUNT_ID).state_machine_log_group)
    logging = deployment.one(STATE_MACHINE).inputs["loggingConfiguration"]
    # Step Functions wants the log group ARN with its ":*" suffix.
    assert logging["logDestination"] == f"{group.outputs['arn']}:*"
    assert logging["level"] in {"ALL", "ERROR", "FATAL"}


def test_state_machine_role_is_its_own_and_trusts_only_this_state_machine(
    deployment: Deployment, config: PipelineConfig
) -> None:
    machine = deployment.one(STATE_MACHINE)
    role = deployment.named(ROLE, spec.names(config, ACCOUNT_ID).state_machine_role)
    assert machine.inputs["roleArn"] == role.outputs["arn"]
    assert role.outputs["arn"] not in {f.inputs["role"] for f in deployment.of_type(FUNCTION)}
    (trust,) = statements(parsed(role, "assumeRolePolicy"))
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        # Derived from the name before the state machine exists; must be its real ARN.
        "ArnLike": {"aws:SourceArn": machine.outputs["arn"]},
    }


def test_state_machine_may_do_exactly_what_its_definition_does(
    deployment: Deployment, config: PipelineConfig
) -> None:
    names = spec.names(config, ACCOUNT_ID)
    role = deployment.named(ROLE, names.state_machine_role)
    (policy,) = [p for p in deployment.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    allowed: dict[str, set[str]] = {}
    for statement in statements(parsed(policy)):
        for action in as_list(statement["Action"]):
            allowed.setdefault(action, set()).update(as_list(statement["Resource"]))
    stage_arns = {
        deployment.named(FUNCTION, names.functions[stage]).outputs["arn"]
        for stage in spec.STAGE_FUNCTIONS
    }
    assert allowed["lambda:InvokeFunction"] == stage_arns | {f"{arn}:*" for arn in stage_arns}
    assert allowed["dynamodb:UpdateItem"] == {deployment.one(TABLE).outputs["arn"]}
    assert allowed["sqs:SendMessage"] == {
        deployment.named(QUEUE, names.stage_dlqs[stage]).outputs["arn"]
        for stage in spec.STAGE_FUNCTIONS
    }
    # Log delivery is checked when the state machine is created: the policy comes first.
    assert policy.urn in deployment.one(STATE_MACHINE).registration.dependencies
    assert "logs:CreateLogDelivery" in allowed
