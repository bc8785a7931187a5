"""What applying the pipeline spec to moto creates: every resource, with the spec's attributes.

One environment is applied once for the whole module (creating the state machine alone takes
moto most of a second); these tests only read it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from provisioner.emulator.apply import (
    AwsClients,
    Phase,
    ResourceProgress,
    apply_pipeline,
    handlers_archive,
    planned_resources,
)
from provisioner.emulator.server import EMULATOR_CONFIG
from stacks import spec
from stacks.config import PipelineConfig
from stacks.state_machine import RetryPolicy
from tests.emulator.conftest import REGION, fake_aws_environment

ACCOUNT = "123456789012"
API = "http://127.0.0.1:8000/environments/acme/dev/api"
RETRY = RetryPolicy(interval_s=1, max_attempts=2, backoff_rate=1.0, max_delay_s=1)


@dataclass(frozen=True)
class Applied:
    config: PipelineConfig
    clients: AwsClients
    outputs: dict[str, str]
    events: list[ResourceProgress]


@pytest.fixture(scope="module")
def env() -> Iterator[Applied]:
    config = PipelineConfig(tenant="acme", environment="dev", tags={"CostCenter": "42"})
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_environment(monkeypatch)
        with mock_aws(config=EMULATOR_CONFIG):  # type: ignore[arg-type]
            clients = AwsClients.from_session(region=REGION)
            events: list[ResourceProgress] = []
            outputs = apply_pipeline(
                config, clients, api_endpoint=API, on_event=events.append, retry=RETRY
            )
            yield Applied(config, clients, outputs, events)


def _finished(events: list[ResourceProgress]) -> list[ResourceProgress]:
    return [event for event in events if event.phase is Phase.FINISHED]


def _queue(clients: AwsClients, name: str) -> tuple[str, dict[str, str]]:
    url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return url, dict(attributes["Attributes"])


def _tags(pairs: list[dict[str, str]], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {pair[key]: pair[value] for pair in pairs}


def test_apply_returns_the_stack_outputs(env: Applied) -> None:
    config, outputs = env.config, env.outputs
    names = spec.names(config, ACCOUNT)
    assert tuple(outputs) == spec.STACK_OUTPUTS
    assert all(isinstance(value, str) and value for value in outputs.values())
    assert outputs["bucketName"] == names.bucket
    assert outputs["ingestQueueUrl"].endswith(f"/{ACCOUNT}/{names.ingest_queue}")
    assert outputs["validatorDlqUrl"].endswith(f"/{names.stage_dlqs['validator']}")
    assert outputs["statusTableName"] == names.status_table
    assert outputs["stateMachineArn"] == (
        f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{names.state_machine}"
    )
    assert outputs["statusFunctionName"] == names.functions["status"]
    assert outputs["apiEndpoint"] == API
    assert outputs["alarmTopicArn"] == f"arn:aws:sns:us-east-1:{ACCOUNT}:{names.alarm_topic}"


def test_events_cover_every_planned_resource(env: Applied) -> None:
    config, events = env.config, env.events
    planned = planned_resources(config)
    started = [e for e in events if e.phase is Phase.STARTED]
    finished = _finished(events)
    assert [(e.resource, e.resource_type) for e in finished] == [(r.name, r.type) for r in planned]
    assert [e.resource for e in started] == [r.name for r in planned]
    assert {e.step for e in events} == {"create"}
    assert Counter(r.type for r in planned) == {
        "aws:cloudwatch/logGroup:LogGroup": 7,
        "aws:kms/key:Key": 1,
        "aws:sns/topic:Topic": 1,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 5,
        "aws:sqs/queue:Queue": 5,
        "aws:s3/bucket:Bucket": 1,
        "aws:dynamodb/table:Table": 1,
        "aws:iam/role:Role": 6,
        "aws:lambda/function:Function": 5,
        "aws:sfn/stateMachine:StateMachine": 1,
        "aws:cloudwatch/eventRule:EventRule": 1,
        "aws:lambda/eventSourceMapping:EventSourceMapping": 1,
    }


def test_queues_match_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    names = spec.names(config, ACCOUNT)
    arns = spec.pipeline_arns(config, ACCOUNT)

    url, ingest = _queue(clients, names.ingest_queue)
    assert ingest["FifoQueue"] == "true"
    assert ingest["ContentBasedDeduplication"] == "true"
    assert ingest["VisibilityTimeout"] == str(6 * spec.INGEST_TIMEOUT_S)
    assert ingest["MessageRetentionPeriod"] == str(spec.INGEST_RETENTION_S)
    assert ingest["SqsManagedSseEnabled"] == "true"
    redrive = json.loads(ingest["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == arns.ingest_dlq
    assert int(redrive["maxReceiveCount"]) == 3
    assert json.loads(ingest["Policy"]) == spec.ingest_queue_policy(arns)
    assert clients.sqs.list_queue_tags(QueueUrl=url)["Tags"] == config.resource_tags()

    for dlq in (names.ingest_dlq, *names.stage_dlqs.values()):
        _, attributes = _queue(clients, dlq)
        assert attributes["FifoQueue"] == "true"
        assert attributes["ContentBasedDeduplication"] == "true"
        assert attributes["MessageRetentionPeriod"] == str(spec.DLQ_RETENTION_S)
        assert "RedrivePolicy" not in attributes


def test_table_matches_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    name = spec.names(config, ACCOUNT).status_table
    table = clients.dynamodb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "fileId", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "objectKey-index"
    assert index["KeySchema"] == [
        {"AttributeName": "objectKey", "KeyType": "HASH"},
        {"AttributeName": "receivedAt", "KeyType": "RANGE"},
    ]
    assert index["Projection"]["ProjectionType"] == "ALL"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = clients.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expirationTime"}
    backups = clients.dynamodb.describe_continuous_backups(TableName=name)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    tags = clients.dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert _tags(tags) == config.resource_tags()


def test_bucket_matches_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    s3 = clients.s3
    bucket = spec.names(config, ACCOUNT).bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    archive = rules["archive-to-glacier"]
    assert archive["Status"] == "Enabled"
    assert archive["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert archive["NoncurrentVersionTransitions"][0]["StorageClass"] == "GLACIER"
    assert rules["expire-abandoned-work"]["Filter"] == {"Prefix": "work/"}
    # moto would apply the TLS-only policy without its conditions and deny every upload.
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    assert _tags(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == config.resource_tags()


def test_rule_matches_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    names = spec.names(config, ACCOUNT)
    rule = clients.events.describe_rule(Name=names.ingest_rule)
    assert json.loads(rule["EventPattern"]) == spec.ingest_rule_event_pattern(names.bucket)
    assert rule["State"] == "ENABLED"
    (target,) = clients.events.list_targets_by_rule(Rule=names.ingest_rule)["Targets"]
    assert target["Arn"] == spec.pipeline_arns(config, ACCOUNT).ingest_queue
    assert target["SqsParameters"] == {"MessageGroupId": spec.INGEST_MESSAGE_GROUP}
    tags = clients.events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
    assert _tags(tags) == config.resource_tags()


def test_functions_match_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    names = spec.names(config, ACCOUNT)
    arns = spec.pipeline_arns(config, ACCOUNT)
    code_sha = base64.b64encode(hashlib.sha256(handlers_archive()).digest()).decode()
    for fn, fn_spec in spec.function_specs(config).items():
        function = clients.lambda_.get_function(FunctionName=names.functions[fn])
        configuration = function["Configuration"]
        assert configuration["Handler"] == fn_spec.handler
        assert configuration["Runtime"] == "python3.13"
        assert configuration["MemorySize"] == fn_spec.memory_mb
        assert configuration["Timeout"] == fn_spec.timeout_s
        assert configuration["Environment"]["Variables"] == spec.function_environment(
            fn, config, names, arns.state_machine
        )
        assert configuration["Role"] == f"arn:aws:iam::{ACCOUNT}:role/{names.function_roles[fn]}"
        assert configuration["CodeSha256"] == code_sha
        assert function["Tags"] == config.resource_tags()
    stage = clients.lambda_.get_function(FunctionName=names.functions["validator"])
    assert stage["Configuration"]["MemorySize"] == 512
    assert stage["Configuration"]["Timeout"] == 300


def test_handlers_archive_is_the_package_and_deterministic() -> None:
    archive = handlers_archive()
    assert archive == handlers_archive()
    entries = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert "handlers/__init__.py" in entries
    assert "handlers/core/status_model.py" in entries
    assert entries == sorted(entries)
    assert not [entry for entry in entries if "__pycache__" in entry]


def test_roles_carry_the_spec_policies(env: Applied) -> None:
    config, clients = env.config, env.clients
    names = spec.names(config, ACCOUNT)
    arns = spec.pipeline_arns(config, ACCOUNT)
    for fn in spec.FUNCTIONS:
        role_name = names.function_roles[fn]
        role = clients.iam.get_role(RoleName=role_name)["Role"]
        assert role["AssumeRolePolicyDocument"] == spec.lambda_assume_role_policy()
        (policy_name,) = clients.iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        document = clients.iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)
        assert document["PolicyDocument"] == spec.function_policy(fn, arns)
        assert _tags(clients.iam.list_role_tags(RoleName=role_name)["Tags"]) == (
            config.resource_tags()
        )
    role = clients.iam.get_role(RoleName=names.state_machine_role)["Role"]
    assert role["AssumeRolePolicyDocument"] == spec.state_machine_assume_role_policy(
        ACCOUNT, arns.state_machine
    )
    (policy_name,) = clients.iam.list_role_policies(RoleName=names.state_machine_role)[
        "PolicyNames"
    ]
    document = clients.iam.get_role_policy(
        RoleName=names.state_machine_role, PolicyName=policy_name
    )
    assert document["PolicyDocument"] == spec.state_machine_policy(arns)


def test_state_machine_is_the_spec_definition(env: Applied) -> None:
    config, clients, outputs = env.config, env.clients, env.outputs
    names = spec.names(config, ACCOUNT)
    arns = spec.pipeline_arns(config, ACCOUNT)
    machine = clients.stepfunctions.describe_state_machine(
        stateMachineArn=outputs["stateMachineArn"]
    )
    expected = spec.state_machine_definition(
        spec.StateMachineTargets(
            status_table=names.status_table,
            functions={stage: arns.functions[stage] for stage in spec.STAGE_FUNCTIONS},
            stage_dlq_urls={stage: outputs[f"{stage}DlqUrl"] for stage in spec.STAGE_FUNCTIONS},
        ),
        RETRY,
        spec.execution_timeout_s(config, RETRY),
    )
    assert json.loads(machine["definition"]) == expected
    assert machine["type"] == "STANDARD"
    assert machine["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{names.state_machine_role}"
    (destination,) = machine["loggingConfiguration"]["destinations"]
    assert destination["cloudWatchLogsLogGroup"]["logGroupArn"].endswith(
        f"log-group:{names.state_machine_log_group}:*"
    )
    tags = clients.stepfunctions.list_tags_for_resource(resourceArn=outputs["stateMachineArn"])
    assert _tags(tags["tags"], "key", "value") == config.resource_tags()


def test_log_groups_and_mapping_match_the_spec(env: Applied) -> None:
    config, clients = env.config, env.clients
    names = spec.names(config, ACCOUNT)
    expected = {
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
    }
    groups = {
        group["logGroupName"]: group
        for group in clients.logs.describe_log_groups()["logGroups"]
        if group["logGroupName"] in expected
    }
    assert set(groups) == expected
    assert {group["retentionInDays"] for group in groups.values()} == {7}
    arn = groups[names.function_log_groups["ingest"]]["logGroupArn"]
    assert clients.logs.list_tags_for_resource(resourceArn=arn)["tags"] == config.resource_tags()

    (mapping,) = clients.lambda_.list_event_source_mappings(FunctionName=names.functions["ingest"])[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == spec.pipeline_arns(config, ACCOUNT).ingest_queue
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["State"] == "Enabled"
    tags = clients.lambda_.list_tags(Resource=mapping["EventSourceMappingArn"])["Tags"]
    assert tags == config.resource_tags()
