"""Applying the pipeline spec to moto: every resource, idempotency, updates, destroy, cancel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.emulator.apply import (
    AwsClients,
    Phase,
    ResourceProgress,
    apply_pipeline,
    destroy_pipeline,
    planned_resources,
)
from provisioner.emulator.lambda_dispatch import LambdaDispatcher
from provisioner.errors import EngineError, OperationCancelledError
from stacks import spec
from stacks.config import PipelineConfig
from stacks.state_machine import RetryPolicy

ACCOUNT = "123456789012"
API = "http://127.0.0.1:8000/environments/acme/dev/api"
RETRY = RetryPolicy(interval_s=1, max_attempts=2, backoff_rate=1.0, max_delay_s=1)


def _apply(config: PipelineConfig, clients: AwsClients, **options: Any) -> list[ResourceProgress]:
    events: list[ResourceProgress] = []
    apply_pipeline(config, clients, api_endpoint=API, on_event=events.append, **options)
    return events


def _finished(events: list[ResourceProgress]) -> list[ResourceProgress]:
    return [event for event in events if event.phase is Phase.FINISHED]


def _queue(clients: AwsClients, name: str) -> tuple[str, dict[str, str]]:
    url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return url, dict(attributes["Attributes"])


def _tags(pairs: list[dict[str, str]], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {pair[key]: pair[value] for pair in pairs}


def test_uploads_under_incoming_reach_the_ingest_queue(
    config: PipelineConfig, clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    """Bucket notification + rule + target + queue policy, end to end inside moto."""
    outputs = apply_pipeline(config, clients, api_endpoint=API)
    bucket = outputs["bucketName"]
    clients.s3.put_object(Bucket=bucket, Key="incoming/day1.csv", Body=b"x")
    clients.s3.put_object(Bucket=bucket, Key="results/not-an-upload.json", Body=b"{}")
    messages = clients.sqs.receive_message(
        QueueUrl=outputs["ingestQueueUrl"],
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["detail"]["object"]["key"] == "incoming/day1.csv"
    assert event["detail"]["bucket"]["name"] == bucket
    assert messages[0]["Attributes"]["MessageGroupId"] == spec.INGEST_MESSAGE_GROUP


# --- idempotency and updates ----------------------------------------------------------------


def _snapshot(config: PipelineConfig, clients: AwsClients) -> dict[str, Any]:
    """Modification stamps that any write would move."""
    names = spec.names(config, ACCOUNT)
    return {
        "functions": {
            fn: [
                configuration["LastModified"],
                configuration["CodeSha256"],
                configuration["Environment"],
            ]
            for fn, name in names.functions.items()
            for configuration in [clients.lambda_.get_function_configuration(FunctionName=name)]
        },
        "queue": _queue(clients, names.ingest_queue)[1]["LastModifiedTimestamp"],
        "machine": clients.stepfunctions.describe_state_machine(
            stateMachineArn=spec.pipeline_arns(config, ACCOUNT).state_machine
        ).get("updateDate"),
    }


def test_second_apply_changes_nothing(config: PipelineConfig, clients: AwsClients) -> None:
    first = apply_pipeline(config, clients, api_endpoint=API)
    before = _snapshot(config, clients)
    events = _apply(config, clients)
    assert {event.step for event in events} == {"same"}
    assert len(_finished(events)) == len(planned_resources(config))
    assert all(event.changes == () for event in events)
    assert _snapshot(config, clients) == before
    assert apply_pipeline(config, clients, api_endpoint=API) == first


def test_changed_settings_update_only_what_differs(
    config: PipelineConfig, clients: AwsClients
) -> None:
    apply_pipeline(config, clients, api_endpoint=API)
    names = spec.names(config, ACCOUNT)
    changed = config.model_copy(update={"max_bad_row_ratio": 0.05, "log_retention_days": 14})
    updates = {
        event.resource: list(event.changes or ())
        for event in _finished(_apply(changed, clients))
        if event.step != "same"
    }
    expected_groups = {
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
    }
    assert updates == {
        **{group: ["retentionInDays"] for group in expected_groups},
        names.functions["validator"]: ["Environment"],
    }
    validator = clients.lambda_.get_function_configuration(
        FunctionName=names.functions["validator"]
    )
    assert validator["Environment"]["Variables"]["MAX_BAD_ROW_RATIO"] == "0.05"
    group = clients.logs.describe_log_groups(logGroupNamePrefix=names.function_log_groups["ingest"])
    assert group["logGroups"][0]["retentionInDays"] == 14


def test_removed_caller_tag_is_removed(config: PipelineConfig, clients: AwsClients) -> None:
    apply_pipeline(config, clients, api_endpoint=API)
    retagged = config.model_copy(update={"tags": {"Owner": "ops"}})
    events = _finished(_apply(retagged, clients))
    assert [e.resource for e in events if e.step != "update"] == []
    assert all(event.changes == ("tags",) for event in events)
    names = spec.names(config, ACCOUNT)
    url, _ = _queue(clients, names.ingest_queue)
    assert clients.sqs.list_queue_tags(QueueUrl=url)["Tags"] == retagged.resource_tags()
    function = clients.lambda_.get_function(FunctionName=names.functions["ingest"])
    assert function["Tags"] == retagged.resource_tags()


def test_drift_is_repaired(config: PipelineConfig, clients: AwsClients) -> None:
    apply_pipeline(config, clients, api_endpoint=API)
    names = spec.names(config, ACCOUNT)
    url, _ = _queue(clients, names.ingest_queue)
    policy = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    # With the policy: moto resets an omitted Policy (a quirk the applier also avoids).
    clients.sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"VisibilityTimeout": "5", "Policy": policy["Attributes"]["Policy"]},
    )
    clients.iam.put_role_policy(
        RoleName=names.function_roles["status"],
        PolicyName="too-broad",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    updates = {
        event.resource: list(event.changes or ())
        for event in _finished(_apply(config, clients))
        if event.step != "same"
    }
    assert updates == {
        names.ingest_queue: ["VisibilityTimeout"],
        names.function_roles["status"]: ["policy too-broad"],
    }
    assert _queue(clients, names.ingest_queue)[1]["VisibilityTimeout"] == "180"
    assert clients.iam.list_role_policies(RoleName=names.function_roles["status"])[
        "PolicyNames"
    ] == [f"{names.function_roles['status']}-policy"]


# --- destroy --------------------------------------------------------------------------------


def _remaining(clients: AwsClients, prefix: str) -> dict[str, list[str]]:
    """Every resource of every service the applier touches whose name starts with `prefix`."""
    log_groups = [
        group["logGroupName"]
        for group in clients.logs.describe_log_groups()["logGroups"]
        if prefix in group["logGroupName"]
    ]
    return {
        "buckets": [
            b["Name"] for b in clients.s3.list_buckets()["Buckets"] if b["Name"].startswith(prefix)
        ],
        "queues": clients.sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []),
        "tables": [t for t in clients.dynamodb.list_tables()["TableNames"] if t.startswith(prefix)],
        "roles": [
            r["RoleName"]
            for r in clients.iam.list_roles()["Roles"]
            if r["RoleName"].startswith(prefix)
        ],
        "functions": [
            f["FunctionName"]
            for f in clients.lambda_.list_functions()["Functions"]
            if f["FunctionName"].startswith(prefix)
        ],
        "mappings": [
            m["FunctionArn"]
            for m in clients.lambda_.list_event_source_mappings()["EventSourceMappings"]
            if f":function:{prefix}" in m["FunctionArn"]
        ],
        "state_machines": [
            m["name"]
            for m in clients.stepfunctions.list_state_machines()["stateMachines"]
            if m["name"].startswith(prefix)
        ],
        "rules": [r["Name"] for r in clients.events.list_rules(NamePrefix=prefix)["Rules"]],
        "log_groups": log_groups,
        "keys": [
            a["AliasName"]
            for a in clients.kms.list_aliases()["Aliases"]
            if a["AliasName"].startswith(f"alias/{prefix}")
        ],
        "topics": [
            t["TopicArn"]
            for t in clients.sns.list_topics()["Topics"]
            if t["TopicArn"].rsplit(":", 1)[1].startswith(prefix)
        ],
        "alarms": [
            a["AlarmName"]
            for a in clients.cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        ],
    }


def test_destroy_removes_one_environment_and_only_that(
    config: PipelineConfig, clients: AwsClients
) -> None:
    other = PipelineConfig(tenant="acme", environment="prod")
    outputs = apply_pipeline(config, clients, api_endpoint=API)
    apply_pipeline(other, clients, api_endpoint=API)
    bucket = outputs["bucketName"]
    # Versions, a delete marker and an unfinished multipart upload must all go.
    clients.s3.put_object(Bucket=bucket, Key="incoming/a.csv", Body=b"1")
    clients.s3.put_object(Bucket=bucket, Key="incoming/a.csv", Body=b"2")
    clients.s3.delete_object(Bucket=bucket, Key="incoming/a.csv")
    clients.s3.create_multipart_upload(Bucket=bucket, Key="incoming/big.csv")

    events: list[ResourceProgress] = []
    destroy_pipeline(config, clients, on_event=events.append)

    assert {e.step for e in _finished(events)} == {"delete"}
    assert len(_finished(events)) == len(planned_resources(config))
    assert not any(_remaining(clients, "p-acme-dev-").values())
    survivor = _remaining(clients, "p-acme-prod-")
    assert {kind: len(found) for kind, found in survivor.items()} == {
        "buckets": 1,
        "queues": 5,
        "tables": 1,
        "roles": 6,
        "functions": 5,
        "mappings": 1,
        "state_machines": 1,
        "rules": 1,
        "log_groups": 7,
        "keys": 1,
        "topics": 1,
        "alarms": 5,
    }
    again = _apply(other, clients)
    assert {e.step for e in again} == {"same"}


def test_destroy_of_an_absent_environment_succeeds(
    config: PipelineConfig, clients: AwsClients
) -> None:
    events: list[ResourceProgress] = []
    destroy_pipeline(config, clients, on_event=events.append)
    assert {e.step for e in _finished(events)} == {"same"}
    assert all("already absent" in e.message for e in _finished(events))


def test_reapply_after_destroy_recreates_everything(
    config: PipelineConfig, clients: AwsClients
) -> None:
    apply_pipeline(config, clients, api_endpoint=API)
    destroy_pipeline(config, clients)
    events = _apply(config, clients)
    assert {e.step for e in events} == {"create"}
    assert {e.step for e in _apply(config, clients)} == {"same"}


# --- cancellation and failures --------------------------------------------------------------


def test_should_stop_cancels_between_resources(config: PipelineConfig, clients: AwsClients) -> None:
    events: list[ResourceProgress] = []

    def stop_after_three() -> bool:
        return len(_finished(events)) >= 3

    with pytest.raises(OperationCancelledError, match="after 3 of 35"):
        apply_pipeline(
            config, clients, api_endpoint=API, on_event=events.append, should_stop=stop_after_three
        )
    assert len(_finished(events)) == 3
    assert not _remaining(clients, "p-acme-dev-")["functions"]


def test_an_incompatible_existing_resource_fails_the_apply(
    config: PipelineConfig, clients: AwsClients
) -> None:
    name = spec.names(config, ACCOUNT).status_table
    clients.dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    events: list[ResourceProgress] = []
    with pytest.raises(EngineError, match="does not replace tables"):
        apply_pipeline(config, clients, api_endpoint=API, on_event=events.append)
    failed = [e for e in events if e.phase is Phase.FAILED]
    assert [(e.resource, e.resource_type) for e in failed] == [(name, "aws:dynamodb/table:Table")]


def test_an_unreachable_emulator_is_an_engine_error(config: PipelineConfig) -> None:
    clients = AwsClients.for_endpoint("http://127.0.0.1:9", region="us-east-1")
    with pytest.raises(EngineError, match="not reachable"):
        apply_pipeline(config, clients, api_endpoint=API)
