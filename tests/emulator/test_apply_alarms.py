"""The applier's alarm resources in moto: key deletion window, e-mail changes, drift, destroy."""

from __future__ import annotations

import json

from provisioner.emulator.apply import (
    AwsClients,
    apply_pipeline,
    destroy_pipeline,
    plan_pipeline,
    planned_resources,
)
from stacks import spec
from stacks.config import PipelineConfig

API = "http://127.0.0.1:8000/environments/acme/dev/api"


def _emails(clients: AwsClients, topic_arn: str) -> list[str]:
    subscriptions = clients.sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    return sorted(s["Endpoint"] for s in subscriptions if s["Protocol"] == "email")


def test_the_email_subscription_follows_the_config(
    config: PipelineConfig, clients: AwsClients
) -> None:
    outputs = apply_pipeline(config, clients, api_endpoint=API)
    topic = outputs["alarmTopicArn"]
    assert _emails(clients, topic) == []
    first = config.model_copy(update={"alarm_email": "a@acme.example"})
    apply_pipeline(first, clients, api_endpoint=API)
    assert _emails(clients, topic) == ["a@acme.example"]
    assert set(plan_pipeline(first, clients)) == {"same"}
    second = config.model_copy(update={"alarm_email": "b@acme.example"})
    apply_pipeline(second, clients, api_endpoint=API)
    assert _emails(clients, topic) == ["b@acme.example"]
    apply_pipeline(config, clients, api_endpoint=API)
    assert _emails(clients, topic) == []


def test_a_changed_alarm_or_topic_policy_is_drift_and_restored(
    config: PipelineConfig, clients: AwsClients
) -> None:
    outputs = apply_pipeline(config, clients, api_endpoint=API)
    names = spec.names(config, clients.account_id())
    name = names.alarms["processor-dlq-depth"]
    clients.cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=100,
        ComparisonOperator="GreaterThanThreshold",
    )
    clients.sns.set_topic_attributes(
        TopicArn=outputs["alarmTopicArn"], AttributeName="Policy", AttributeValue="{}"
    )
    events: list[str] = []
    counts = plan_pipeline(config, clients, on_event=lambda e: events.append(e.message))
    assert counts["update"] == 2
    assert any(name in m and "Threshold" in m for m in events), events
    apply_pipeline(config, clients, api_endpoint=API)
    (alarm,) = clients.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert alarm["Threshold"] == 0
    assert alarm["AlarmActions"] == [outputs["alarmTopicArn"]]
    policy = clients.sns.get_topic_attributes(TopicArn=outputs["alarmTopicArn"])["Attributes"]
    assert json.loads(policy["Policy"]) == spec.alarm_topic_policy(
        spec.pipeline_arns(config, clients.account_id()), clients.account_id()
    )
    assert plan_pipeline(config, clients) == {"same": len(planned_resources(config))}


def test_destroy_schedules_the_key_for_deletion_with_the_models_window(
    config: PipelineConfig, clients: AwsClients
) -> None:
    apply_pipeline(config, clients, api_endpoint=API)
    alias = spec.names(config, clients.account_id()).alarm_key_alias
    key_id = clients.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    destroy_pipeline(config, clients)
    key = clients.kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert key["KeyState"] == "PendingDeletion"
    window = key["DeletionDate"] - key["CreationDate"]
    assert round(window.total_seconds() / 86400) == spec.ALARM_KEY.deletion_window_days
    assert alias not in [a["AliasName"] for a in clients.kms.list_aliases()["Aliases"]]
    # A new environment of the same name gets a new key.
    apply_pipeline(config, clients, api_endpoint=API)
    assert clients.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] != key_id
