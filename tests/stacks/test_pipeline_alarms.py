"""The alarm resources as registered: key, encrypted topic and its policy, e-mail, alarms."""

from __future__ import annotations

import pytest

from stacks import spec
from stacks.config import PipelineConfig
from tests.stacks.documents import as_list, parsed, statements
from tests.stacks.mocks import (
    ACCOUNT_ID,
    KMS_ALIAS,
    KMS_KEY,
    METRIC_ALARM,
    QUEUE,
    STATE_MACHINE,
    TOPIC,
    TOPIC_POLICY,
    TOPIC_SUBSCRIPTION,
    Deployment,
    deploy,
)


def test_the_topic_is_encrypted_with_its_own_key(deployment: Deployment) -> None:
    key, topic = deployment.one(KMS_KEY), deployment.one(TOPIC)
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    # alias/aws/sns cannot be used: its policy does not let CloudWatch use the key.
    assert "alias/aws/sns" not in str(topic.inputs)
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 7
    alias = deployment.one(KMS_ALIAS)
    assert alias.inputs["targetKeyId"] == key.outputs["keyId"]
    assert alias.inputs["name"] == "alias/p-acme-dev-alarms"
    assert topic.inputs["name"] == "p-acme-dev-alarms"


def test_the_key_policy_lets_cloudwatch_encrypt_and_nobody_else_use_it(
    deployment: Deployment,
) -> None:
    found = {s["Sid"]: s for s in statements(parsed(deployment.one(KMS_KEY)))}
    assert set(found) == {"AccountAdministers", "CloudWatchPublishes"}
    publish = found["CloudWatchPublishes"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(as_list(publish["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    admin = found["AccountAdministers"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    actions = as_list(admin["Action"])
    # Administration only: no "*", no key use (Encrypt, Decrypt, GenerateDataKey*).
    assert "kms:*" not in actions
    assert "*" not in actions
    assert not {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"} & set(actions)
    assert not any(a.startswith("kms:Generate") for a in actions)
    assert {"kms:ScheduleKeyDeletion", "kms:Put*"} <= set(actions)


def test_only_the_environments_alarms_may_publish_to_its_topic(deployment: Deployment) -> None:
    topic = deployment.one(TOPIC)
    policy = deployment.one(TOPIC_POLICY)
    assert policy.inputs["arn"] == topic.outputs["arn"]
    (statement,) = statements(parsed(policy))
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Resource"] == topic.outputs["arn"]
    alarm_arns = sorted(a.outputs["arn"] for a in deployment.of_type(METRIC_ALARM))
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        "ArnLike": {"aws:SourceArn": alarm_arns},
    }


def test_one_alarm_per_dead_letter_queue_depth(deployment: Deployment) -> None:
    topic_arn = deployment.one(TOPIC).outputs["arn"]
    dlqs = {q.inputs["name"] for q in deployment.of_type(QUEUE) if "dlq" in q.inputs["name"]}
    depth = [a for a in deployment.of_type(METRIC_ALARM) if a.inputs["namespace"] == "AWS/SQS"]
    assert {a.inputs["dimensions"]["QueueName"] for a in depth} == dlqs
    assert len(dlqs) == 4
    for alarm in depth:
        inputs = alarm.inputs
        assert inputs["metricName"] == "ApproximateNumberOfMessagesVisible"
        assert inputs["statistic"] == "Maximum"
        assert (inputs["comparisonOperator"], inputs["threshold"]) == ("GreaterThanThreshold", 0)
        assert inputs["treatMissingData"] == "notBreaching"
        assert inputs["alarmActions"] == inputs["okActions"] == [topic_arn]
        assert inputs["actionsEnabled"] is True


def test_an_alarm_on_failed_executions(deployment: Deployment) -> None:
    machine = deployment.one(STATE_MACHINE)
    (alarm,) = [
        a for a in deployment.of_type(METRIC_ALARM) if a.inputs["namespace"] == "AWS/States"
    ]
    assert alarm.inputs["name"] == "p-acme-dev-failed-executions"
    assert alarm.inputs["metricName"] == "ExecutionsFailed"
    assert alarm.inputs["statistic"] == "Sum"
    assert alarm.inputs["dimensions"] == {"StateMachineArn": machine.outputs["arn"]}
    assert alarm.inputs["alarmActions"] == [deployment.one(TOPIC).outputs["arn"]]


def test_no_email_subscription_unless_configured(deployment: Deployment) -> None:
    assert deployment.of_type(TOPIC_SUBSCRIPTION) == []


@pytest.fixture(scope="module")
def emailed() -> Deployment:
    return deploy(
        PipelineConfig(tenant="acme", environment="dev", alarm_email="oncall@acme.example")
    )


def test_the_configured_email_is_subscribed(emailed: Deployment) -> None:
    subscription = emailed.one(TOPIC_SUBSCRIPTION)
    assert subscription.inputs["topic"] == emailed.one(TOPIC).outputs["arn"]
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "oncall@acme.example"
    config = PipelineConfig(tenant="acme", environment="dev", alarm_email="oncall@acme.example")
    assert sum(spec.inventory_counts(config).values()) == sum(
        1 for r in emailed.resources if r.type.startswith("aws:")
    )


def test_the_alarm_topic_is_a_stack_output(deployment: Deployment) -> None:
    assert deployment.exports["alarmTopicArn"] == deployment.one(TOPIC).outputs["arn"]
    assert deployment.exports["alarmTopicArn"] == (
        f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:p-acme-dev-alarms"
    )
