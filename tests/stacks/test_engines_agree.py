"""The two engines build the same pipeline: the Pulumi program, rendered under Pulumi's mocks,
and the local engine's applier, applied to moto and read back with describe/get calls, are
compared attribute by attribute (both sides normalised into one spelling).

What the emulator does not build, or cannot show, is the one table `EMULATOR_DIFFERENCES`, each
with its reason; everything else must agree. Both renderers read one model (`stacks.resources`),
so this test fails as soon as one renderer sets a property the other does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import unquote

import pytest
from moto import mock_aws

from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.server import EMULATOR_CONFIG
from stacks import spec
from stacks.config import PipelineConfig
from tests.emulator.conftest import fake_aws_environment
from tests.stacks import mocks
from tests.stacks.mocks import Deployment, deploy

Facts = dict[tuple[str, str], dict[str, Any]]  # (kind, physical name) → attribute → value

LOCAL_API: Final = "http://127.0.0.1:8000/local/t/e/prod"

# Everything the emulator leaves out or cannot read back, by (kind, attribute); attribute "*"
# means the whole resource. The inventory's "absent" types must all be here (checked below).
EMULATOR_DIFFERENCES: Final[dict[tuple[str, str], str]] = {
    ("api", "*"): "moto serves no AWS_PROXY integrations: the local engine serves the status "
    "API itself (provisioner.routes.local_api), from the same route table",
    ("bucket", "tlsOnlyPolicy"): "moto enforces bucket policies on object requests but ignores "
    "their conditions, so Deny-unless-TLS would deny every upload; the emulator is plain HTTP "
    "on loopback",
    ("bucket", "emptyOnDestroy"): "a Pulumi provider setting (force_destroy); the applier "
    "empties the versioned bucket itself on destroy (tests/emulator/test_apply.py)",
    ("bucket", "eventbridge"): "moto never returns EventBridgeConfiguration from "
    "GetBucketNotificationConfiguration; the applier re-puts it on every apply",
    ("function", "layers"): "moto rejects another account's layer; the local runtime imports "
    "Powertools from the service's own environment",
    ("function", "logging"): "moto drops LoggingConfig; the functions log to their default "
    "groups, which are the model's",
    ("output", "apiEndpoint"): "the local engine's status API is served by the service itself",
    ("key", "deletionWindow"): "KMS shows a key's deletion window only once its deletion is "
    "scheduled; the applier schedules it with the model's window on destroy "
    "(tests/emulator/test_apply_alarms.py)",
}

_LONG_TENANT: Final = "t" + "x" * 19  # [a-z][a-z0-9]{0,19}
_LONG_ENVIRONMENT: Final = "e" + "y" * 11  # [a-z][a-z0-9-]{0,11}

CONFIGS: Final = {
    "defaults": PipelineConfig(tenant="acme", environment="dev"),
    "every-tunable": PipelineConfig(
        tenant="globex",
        environment="stage-2",
        region="eu-west-1",
        team="quant",
        memory_mb=1024,
        stage_timeout_s=600,
        log_retention_days=14,
        glacier_after_days=30,
        status_ttl_days=7,
        api_rate_limit=250,
        api_burst_limit=400,
        max_bad_row_ratio=0.05,
        powertools_layer_arn="arn:aws:lambda:eu-west-1:111122223333:layer:powertools:3",
    ),
    "longest-names": PipelineConfig(tenant=_LONG_TENANT, environment=_LONG_ENVIRONMENT),
    "caller-tags": PipelineConfig(
        tenant="initech",
        environment="prod",
        tags={"CostCenter": "42", "Desk": "equities/eu"},
        alarm_email="oncall@initech.example",
    ),
}


# --- normalising ----------------------------------------------------------------------------


def norm(value: Any) -> Any:
    """One spelling for both tools' values: bools for "true"/"True", ints for integral numbers
    and numeric strings (names, tag keys and variables keep their case)."""
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [norm(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value.isdigit():
            return int(value)
    return value


def fold(value: Any) -> Any:
    """Structure keys in one spelling: `StorageClass` (boto3) = `storageClass` (pulumi)."""
    if isinstance(value, dict):
        return {str(k).lower().replace("_", ""): fold(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fold(item) for item in value]
    return value


def document(value: Any) -> Any:
    """A JSON policy or definition as a value (IAM URL-encodes the documents it returns)."""
    if value is None or isinstance(value, dict):
        return value
    return json.loads(unquote(value) if value.startswith("%7B") else value)


def tags_of(pairs: list[dict[str, str]], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {pair[key]: pair[value] for pair in pairs}


# --- the Pulumi program, under the mocks ----------------------------------------------------


def pulumi_facts(deployment: Deployment) -> Facts:
    facts: Facts = {}

    def inputs(typ: str) -> Iterator[dict[str, Any]]:
        for resource in deployment.of_type(typ):
            yield resource.inputs

    for q in inputs(mocks.QUEUE):
        facts["queue", q["name"]] = {
            "fifo": q["fifoQueue"],
            "contentBasedDeduplication": q["contentBasedDeduplication"],
            "deduplicationScope": q["deduplicationScope"],
            "throughputLimit": q["fifoThroughputLimit"],
            "visibilityTimeout": q["visibilityTimeoutSeconds"],
            "retention": q["messageRetentionSeconds"],
            "maxMessageSize": q["maxMessageSize"],
            "delay": q["delaySeconds"],
            "receiveWait": q["receiveWaitTimeSeconds"],
            "managedSse": q["sqsManagedSseEnabled"],
            "redrive": document(q.get("redrivePolicy")),
            "policy": None,
            "tags": q["tags"],
        }
    for p in inputs(mocks.QUEUE_POLICY):
        facts["queue", p["queueUrl"].rsplit("/", 1)[1]]["policy"] = document(p["policy"])

    (b,) = inputs(mocks.BUCKET)
    (block,) = inputs(mocks.BUCKET_PUBLIC_ACCESS)
    (sse,) = inputs(mocks.BUCKET_ENCRYPTION)
    (versioning,) = inputs(mocks.BUCKET_VERSIONING)
    (lifecycle,) = inputs(mocks.BUCKET_LIFECYCLE)
    (policy,) = inputs(mocks.BUCKET_POLICY)
    (notification,) = inputs(mocks.BUCKET_NOTIFICATION)
    facts["bucket", b["bucket"]] = {
        "tags": b["tags"],
        "emptyOnDestroy": b["forceDestroy"],
        "publicAccess": fold({k: v for k, v in block.items() if k != "bucket"}),
        "encryption": sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"],
        "versioning": versioning["versioningConfiguration"]["status"],
        "lifecycle": fold(lifecycle["rules"]),
        "tlsOnlyPolicy": document(policy["policy"]),
        "eventbridge": notification["eventbridge"],
    }

    (t,) = inputs(mocks.TABLE)
    facts["table", t["name"]] = {
        "billing": t["billingMode"],
        "partitionKey": t["hashKey"],
        "attributes": sorted((a["name"], a["type"]) for a in t["attributes"]),
        "indexes": sorted(
            (
                i["name"],
                tuple((k["attributeName"], k["keyType"]) for k in i["keySchemas"]),
                i["projectionType"],
            )
            for i in t["globalSecondaryIndexes"]
        ),
        "encrypted": t["serverSideEncryption"]["enabled"],
        "ttl": (t["ttl"]["attributeName"], t["ttl"]["enabled"]),
        "pointInTimeRecovery": t["pointInTimeRecovery"]["enabled"],
        "deletionProtection": t["deletionProtectionEnabled"],
        "tags": t["tags"],
    }

    for g in inputs(mocks.LOG_GROUP):
        facts["log group", g["name"]] = {"retention": g["retentionInDays"], "tags": g["tags"]}

    for r in inputs(mocks.ROLE):
        facts["role", r["name"]] = {
            "trust": document(r["assumeRolePolicy"]),
            "policies": {},
            "tags": r["tags"],
        }
    for p in inputs(mocks.ROLE_POLICY):
        facts["role", p["role"]]["policies"][p["name"]] = document(p["policy"])

    for f in inputs(mocks.FUNCTION):
        facts["function", f["name"]] = {
            "handler": f["handler"],
            "runtime": f["runtime"],
            "architectures": f["architectures"],
            "memory": f["memorySize"],
            "timeout": f["timeout"],
            "description": f["description"],
            "role": f["role"],
            "environment": f["environment"]["variables"],
            "layers": f["layers"],
            "logging": f["loggingConfig"],
            "tags": f["tags"],
        }

    (m,) = inputs(mocks.STATE_MACHINE)
    logging = m["loggingConfiguration"]
    facts["state machine", m["name"]] = {
        "type": m["type"],
        "role": m["roleArn"],
        "definition": document(m["definition"]),
        "logLevel": logging["level"],
        "logExecutionData": logging["includeExecutionData"],
        "logDestination": logging["logDestination"],
        "tags": m["tags"],
    }

    (rule,) = inputs(mocks.EVENT_RULE)
    (target,) = inputs(mocks.EVENT_TARGET)
    facts["event rule", rule["name"]] = {
        "description": rule["description"],
        "state": rule["state"],
        "pattern": document(rule["eventPattern"]),
        "targets": [(target["targetId"], target["arn"], target["sqsTarget"]["messageGroupId"])],
        "tags": rule["tags"],
    }

    (e,) = inputs(mocks.EVENT_SOURCE_MAPPING)
    facts["event source mapping", e["eventSourceArn"]] = {
        "function": e["functionName"],
        "batchSize": e["batchSize"],
        "responseTypes": e["functionResponseTypes"],
        "enabled": e["enabled"],
        "tags": e["tags"],
    }

    (key,) = inputs(mocks.KMS_KEY)
    (key_resource,) = deployment.of_type(mocks.KMS_KEY)
    (alias,) = inputs(mocks.KMS_ALIAS)
    facts["key", alias["name"]] = {
        "description": key["description"],
        "usage": key["keyUsage"],
        "spec": key["customerMasterKeySpec"],
        "rotation": key["enableKeyRotation"],
        "deletionWindow": key["deletionWindowInDays"],
        "policy": document(key["policy"]),
        "tags": key["tags"],
    }
    (topic,) = inputs(mocks.TOPIC)
    (topic_policy,) = inputs(mocks.TOPIC_POLICY)
    facts["topic", topic["name"]] = {
        "displayName": topic["displayName"],
        "encryptedWithAlarmKey": topic["kmsMasterKeyId"] == key_resource.outputs["arn"],
        "policy": document(topic_policy["policy"]),
        "subscriptions": sorted(
            (s["protocol"], s["endpoint"]) for s in inputs(mocks.TOPIC_SUBSCRIPTION)
        ),
        "tags": topic["tags"],
    }
    for a in inputs(mocks.METRIC_ALARM):
        facts["alarm", a["name"]] = {
            "description": a["alarmDescription"],
            "namespace": a["namespace"],
            "metric": a["metricName"],
            "dimensions": a["dimensions"],
            "statistic": a["statistic"],
            "period": a["period"],
            "evaluationPeriods": a["evaluationPeriods"],
            "datapointsToAlarm": a["datapointsToAlarm"],
            "threshold": a["threshold"],
            "comparison": a["comparisonOperator"],
            "treatMissingData": a["treatMissingData"],
            "actionsEnabled": a["actionsEnabled"],
            "alarmActions": a["alarmActions"],
            "okActions": a["okActions"],
            "tags": a["tags"],
        }

    for typ in (mocks.REST_API, mocks.API_STAGE):
        for resource in deployment.of_type(typ):
            facts["api", f"{typ}:{resource.name}"] = {"*": True}
    facts["output", "outputs"] = dict(deployment.exports)
    return facts


# --- the applier, applied to moto and read back ---------------------------------------------


def emulator_facts(config: PipelineConfig, clients: AwsClients, outputs: dict[str, str]) -> Facts:
    facts: Facts = {}
    names = spec.names(config, clients.account_id())
    sqs, s3, logs, iam = clients.sqs, clients.s3, clients.logs, clients.iam

    for url in sqs.list_queues(QueueNamePrefix=names.prefix).get("QueueUrls", []):
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        facts["queue", url.rsplit("/", 1)[1]] = {
            "fifo": a.get("FifoQueue"),
            "contentBasedDeduplication": a.get("ContentBasedDeduplication"),
            "deduplicationScope": a.get("DeduplicationScope"),
            "throughputLimit": a.get("FifoThroughputLimit"),
            "visibilityTimeout": a.get("VisibilityTimeout"),
            "retention": a.get("MessageRetentionPeriod"),
            "maxMessageSize": a.get("MaximumMessageSize"),
            "delay": a.get("DelaySeconds"),
            "receiveWait": a.get("ReceiveMessageWaitTimeSeconds"),
            "managedSse": a.get("SqsManagedSseEnabled"),
            "redrive": document(a.get("RedrivePolicy")),
            "policy": document(a.get("Policy")),
            "tags": sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
        }

    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        if not bucket.startswith(names.prefix):
            continue
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        facts["bucket", bucket] = {
            "tags": tags_of(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]),
            "publicAccess": fold(
                s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            ),
            "encryption": rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
            "lifecycle": fold(s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]),
        }

    for table_name in clients.dynamodb.list_tables()["TableNames"]:
        if not table_name.startswith(names.prefix):
            continue
        ddb = clients.dynamodb
        t = ddb.describe_table(TableName=table_name)["Table"]
        ttl = ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        backups = ddb.describe_continuous_backups(TableName=table_name)
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        facts["table", table_name] = {
            "billing": t.get("BillingModeSummary", {}).get("BillingMode"),
            "partitionKey": next(
                k["AttributeName"] for k in t["KeySchema"] if k["KeyType"] == "HASH"
            ),
            "attributes": sorted(
                (a["AttributeName"], a["AttributeType"]) for a in t["AttributeDefinitions"]
            ),
            "indexes": sorted(
                (
                    i["IndexName"],
                    tuple((k["AttributeName"], k["KeyType"]) for k in i["KeySchema"]),
                    i["Projection"]["ProjectionType"],
                )
                for i in t.get("GlobalSecondaryIndexes", [])
            ),
            "encrypted": t.get("SSEDescription", {}).get("Status") == "ENABLED",
            "ttl": (ttl.get("AttributeName"), ttl.get("TimeToLiveStatus") == "ENABLED"),
            "pointInTimeRecovery": pitr.get("PointInTimeRecoveryStatus") == "ENABLED",
            "deletionProtection": t.get("DeletionProtectionEnabled", False),
            "tags": tags_of(ddb.list_tags_of_resource(ResourceArn=t["TableArn"])["Tags"]),
        }

    for prefix in ("/aws/lambda/", "/aws/vendedlogs/states/", "/aws/apigateway/"):
        for group in logs.describe_log_groups(logGroupNamePrefix=prefix + names.prefix)[
            "logGroups"
        ]:
            arn = group["arn"].removesuffix(":*")
            facts["log group", group["logGroupName"]] = {
                "retention": group.get("retentionInDays"),
                "tags": logs.list_tags_for_resource(resourceArn=arn).get("tags", {}),
            }

    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        if not name.startswith(names.prefix):
            continue
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        facts["role", name] = {
            "trust": document(role["AssumeRolePolicyDocument"]),
            "policies": {
                policy: document(
                    iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                )
                for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
            },
            "tags": tags_of(iam.list_role_tags(RoleName=name)["Tags"]),
        }

    for fn in names.functions.values():
        c = clients.lambda_.get_function(FunctionName=fn)["Configuration"]
        facts["function", fn] = {
            "handler": c["Handler"],
            "runtime": c["Runtime"],
            "architectures": c["Architectures"],
            "memory": c["MemorySize"],
            "timeout": c["Timeout"],
            "description": c["Description"],
            "role": c["Role"],
            "environment": c["Environment"]["Variables"],
            "tags": clients.lambda_.list_tags(Resource=c["FunctionArn"])["Tags"],
        }

    sfn = clients.stepfunctions
    arns = spec.pipeline_arns(config, clients.account_id())
    m = sfn.describe_state_machine(stateMachineArn=arns.state_machine)
    logging = m["loggingConfiguration"]
    facts["state machine", m["name"]] = {
        "type": m["type"],
        "role": m["roleArn"],
        "definition": document(m["definition"]),
        "logLevel": logging["level"],
        "logExecutionData": logging["includeExecutionData"],
        "logDestination": logging["destinations"][0]["cloudWatchLogsLogGroup"]["logGroupArn"],
        "tags": tags_of(
            sfn.list_tags_for_resource(resourceArn=arns.state_machine)["tags"], "key", "value"
        ),
    }

    events = clients.events
    rule = events.describe_rule(Name=names.ingest_rule)
    facts["event rule", rule["Name"]] = {
        "description": rule.get("Description"),
        "state": rule["State"],
        "pattern": document(rule["EventPattern"]),
        "targets": [
            (t["Id"], t["Arn"], t["SqsParameters"]["MessageGroupId"])
            for t in events.list_targets_by_rule(Rule=names.ingest_rule)["Targets"]
        ],
        "tags": tags_of(events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]),
    }

    for e in clients.lambda_.list_event_source_mappings()["EventSourceMappings"]:
        facts["event source mapping", e["EventSourceArn"]] = {
            "function": e["FunctionArn"],
            "batchSize": e["BatchSize"],
            "responseTypes": e.get("FunctionResponseTypes", []),
            "enabled": e["State"] in ("Enabled", "Enabling"),
            "tags": clients.lambda_.list_tags(Resource=e["EventSourceMappingArn"])["Tags"],
        }

    kms, sns, cloudwatch = clients.kms, clients.sns, clients.cloudwatch
    k = kms.describe_key(KeyId=names.alarm_key_alias)["KeyMetadata"]
    facts["key", names.alarm_key_alias] = {
        "description": k["Description"],
        "usage": k["KeyUsage"],
        "spec": k["KeySpec"],
        "rotation": kms.get_key_rotation_status(KeyId=k["KeyId"])["KeyRotationEnabled"],
        "policy": document(kms.get_key_policy(KeyId=k["KeyId"], PolicyName="default")["Policy"]),
        "tags": tags_of(kms.list_resource_tags(KeyId=k["KeyId"])["Tags"], "TagKey", "TagValue"),
    }
    for topic_arn in (t["TopicArn"] for t in sns.list_topics()["Topics"]):
        topic = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]
        facts["topic", topic_arn.rsplit(":", 1)[1]] = {
            "displayName": topic["DisplayName"],
            "encryptedWithAlarmKey": topic.get("KmsMasterKeyId") == k["Arn"],
            "policy": document(topic["Policy"]),
            "subscriptions": sorted(
                (s["Protocol"], s["Endpoint"])
                for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
            ),
            "tags": tags_of(sns.list_tags_for_resource(ResourceArn=topic_arn)["Tags"]),
        }
    for a in cloudwatch.describe_alarms(AlarmNamePrefix=names.prefix)["MetricAlarms"]:
        facts["alarm", a["AlarmName"]] = {
            "description": a["AlarmDescription"],
            "namespace": a["Namespace"],
            "metric": a["MetricName"],
            "dimensions": tags_of(a["Dimensions"], "Name", "Value"),
            "statistic": a["Statistic"],
            "period": a["Period"],
            "evaluationPeriods": a["EvaluationPeriods"],
            "datapointsToAlarm": a["DatapointsToAlarm"],
            "threshold": a["Threshold"],
            "comparison": a["ComparisonOperator"],
            "treatMissingData": a["TreatMissingData"],
            "actionsEnabled": a["ActionsEnabled"],
            "alarmActions": a["AlarmActions"],
            "okActions": a["OKActions"],
            "tags": tags_of(cloudwatch.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"]),
        }

    facts["output", "outputs"] = dict(outputs)
    return facts


# --- the comparison -------------------------------------------------------------------------


def differences(expected: Facts, actual: Facts) -> list[str]:
    """Every disagreement not explained by EMULATOR_DIFFERENCES, one line each."""
    found: list[str] = []
    for key in sorted(set(expected) | set(actual)):
        kind, name = key
        if (kind, "*") in EMULATOR_DIFFERENCES:
            continue
        if key not in expected or key not in actual:
            side = "the Pulumi program" if key not in expected else "the emulator"
            found.append(f"{kind} {name}: missing from {side}")
            continue
        pulumi_side, local_side = expected[key], actual[key]
        for attribute in sorted(set(pulumi_side) | set(local_side)):
            if (kind, attribute) in EMULATOR_DIFFERENCES:
                continue
            left, right = norm(pulumi_side.get(attribute)), norm(local_side.get(attribute))
            if kind == "output":
                continue
            if left != right:
                found.append(f"{kind} {name}: {attribute}: pulumi {left!r} != emulator {right!r}")
        if kind == "output":
            for output in sorted(set(pulumi_side) | set(local_side)):
                if ("output", output) in EMULATOR_DIFFERENCES:
                    continue
                if pulumi_side.get(output) != local_side.get(output):
                    found.append(
                        f"output {output}: pulumi {pulumi_side.get(output)!r} "
                        f"!= emulator {local_side.get(output)!r}"
                    )
    return found


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def both_engines(request: pytest.FixtureRequest) -> tuple[Facts, Facts]:
    config = CONFIGS[request.param]
    expected = pulumi_facts(deploy(config))
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_environment(monkeypatch)
        with mock_aws(config=EMULATOR_CONFIG):  # type: ignore[arg-type]
            clients = AwsClients.from_session(region=config.region)
            outputs = apply_pipeline(config, clients, api_endpoint=LOCAL_API)
            actual = emulator_facts(config, clients, outputs)
    return expected, actual


def test_the_engines_build_the_same_resources_with_the_same_attributes(
    both_engines: tuple[Facts, Facts],
) -> None:
    expected, actual = both_engines
    assert differences(expected, actual) == []


def test_the_comparison_covers_every_resource_kind(both_engines: tuple[Facts, Facts]) -> None:
    """The read-back is not vacuous: every kind of resource was compared, with its attributes."""
    expected, actual = both_engines
    kinds = {kind for kind, _ in actual}
    assert kinds == {
        "queue",
        "bucket",
        "table",
        "log group",
        "role",
        "function",
        "state machine",
        "event rule",
        "event source mapping",
        "key",
        "topic",
        "alarm",
        "output",
    }
    assert sum(1 for kind, _ in actual if kind == "queue") == len(spec.QUEUES)
    assert sum(1 for kind, _ in actual if kind == "alarm") == len(spec.ALARMS)
    assert sum(1 for kind, _ in actual if kind == "function") == len(spec.FUNCTIONS)
    assert all(facts for facts in actual.values())


def test_every_resource_the_emulator_leaves_out_has_a_reason() -> None:
    absent = {item.type for item in spec.INVENTORY if item.local == "absent"}
    explained = {
        "aws:s3/bucketPolicy:BucketPolicy": ("bucket", "tlsOnlyPolicy"),
        **{typ: ("api", "*") for typ in absent if typ.startswith("aws:apigateway/")},
        "aws:lambda/permission:Permission": ("api", "*"),
    }
    assert absent == set(explained)
    assert all(explained[typ] in EMULATOR_DIFFERENCES for typ in absent)


def test_a_property_changed_in_one_renderer_only_is_found() -> None:
    """The comparison itself: one attribute differing on one side is reported by name."""
    expected: Facts = {("queue", "q.fifo"): {"maxMessageSize": 262144.0, "fifo": "true"}}
    actual: Facts = {("queue", "q.fifo"): {"maxMessageSize": "1048576", "fifo": True}}
    assert differences(expected, actual) == [
        "queue q.fifo: maxMessageSize: pulumi 262144 != emulator 1048576"
    ]
    assert differences(expected, {}) == ["queue q.fifo: missing from the emulator"]
