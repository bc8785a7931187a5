"""The resource model: every property of every resource of docs/architecture.md §2, decided once.

Pure Python, in this project's own words (neither boto3's nor pulumi-aws's field names).
`stacks.pipeline` renders it as Pulumi resources and `provisioner.emulator.apply` renders it as
boto3 calls; neither holds a property of its own. Every setting a tool would otherwise default
is set here (e.g. a queue's maximum message size: pulumi-aws and AWS disagree on it), so the two
engines cannot drift apart by leaving a fact to a default.

`INVENTORY` says which resources exist and how the emulator holds each one; `stack_outputs`
maps the outputs (a contract) from the resources that provide them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from handlers.core.routes import STATUS_ROUTES, Route, resource_paths
from handlers.core.status_model import OBJECT_KEY_INDEX, TTL_ATTRIBUTE
from stacks.config import PipelineConfig
from stacks.naming import (
    ALARMS,
    API_STAGE,
    FUNCTIONS,
    QUEUES,
    FunctionName,
    QueueKey,
)

__all__ = [
    "API",
    "BUCKET",
    "INGEST_RULE",
    "INGEST_SOURCE",
    "INVENTORY",
    "STACK_OUTPUTS",
    "STATE_MACHINE",
    "STATUS_TABLE",
    "InventoryItem",
    "LifecycleRule",
    "QueueSettings",
    "inventory",
    "inventory_counts",
    "lifecycle_rules",
    "queue_settings",
    "role_policy_name",
    "stack_outputs",
]

# Object key prefixes (architecture.md §2): uploads, intermediate per-file work, published results.
INCOMING_PREFIX: Final = "incoming/"
WORK_PREFIX: Final = "work/"
RESULTS_PREFIX: Final = "results/"

# --- bucket ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketSettings:
    versioned: bool
    encryption: Literal["AES256"]  # SSE-S3
    block_public_acls: bool
    ignore_public_acls: bool
    block_public_policy: bool
    restrict_public_buckets: bool
    eventbridge_notifications: bool  # S3 → EventBridge, for the ingest rule
    tls_only: bool  # a bucket policy denying plain HTTP and TLS < 1.2 (`policies.bucket_policy`)
    empty_on_destroy: bool  # docs/architecture.md §2: fully destroyable, versioned bucket emptied


BUCKET: Final = BucketSettings(
    versioned=True,
    encryption="AES256",
    block_public_acls=True,
    ignore_public_acls=True,
    block_public_policy=True,
    restrict_public_buckets=True,
    eventbridge_notifications=True,
    tls_only=True,
    empty_on_destroy=True,
)


def versioning_status(bucket: BucketSettings) -> Literal["Enabled", "Suspended"]:
    return "Enabled" if bucket.versioned else "Suspended"


# Noncurrent versions spend this long in GLACIER before they expire: its minimum storage
# duration, so expiring them never incurs an early-deletion charge.
GLACIER_MINIMUM_DAYS: Final = 90
ABORT_MULTIPART_AFTER_DAYS: Final = 7
# Per-file intermediates under work/ are deleted by the aggregator; a failed file leaves them.
WORK_EXPIRATION_DAYS: Final = 7
ARCHIVE_STORAGE_CLASS: Final = "GLACIER"


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule; None means the rule has no such action."""

    id: str
    prefix: str
    enabled: bool = True
    archive_after_days: int | None = None  # current versions → ARCHIVE_STORAGE_CLASS
    archive_noncurrent_after_days: int | None = None
    expire_after_days: int | None = None  # current versions
    expire_noncurrent_after_days: int | None = None
    abort_multipart_after_days: int | None = None


def lifecycle_rules(config: PipelineConfig) -> tuple[LifecycleRule, ...]:
    """Everything moves to GLACIER after `glacier_after_days`; nothing current ever expires
    except abandoned intermediates under work/."""
    days = config.glacier_after_days
    return (
        LifecycleRule(
            id="archive-to-glacier",
            prefix="",
            archive_after_days=days,
            archive_noncurrent_after_days=days,
            expire_noncurrent_after_days=days + GLACIER_MINIMUM_DAYS,
            abort_multipart_after_days=ABORT_MULTIPART_AFTER_DAYS,
        ),
        LifecycleRule(
            id="expire-abandoned-work",
            prefix=WORK_PREFIX,
            expire_after_days=WORK_EXPIRATION_DAYS,
            expire_noncurrent_after_days=1,
        ),
    )


# --- queues ---------------------------------------------------------------------------------

INGEST_TIMEOUT_S: Final = 30  # the ingest function's timeout (also `spec.function_specs`)
MAX_RECEIVE_COUNT: Final = 3
# AWS's guidance for an SQS event source: visibility timeout at least six times the function's.
VISIBILITY_TIMEOUT_FACTOR: Final = 6
INGEST_RETENTION_S: Final = 4 * 24 * 3600
DLQ_RETENTION_S: Final = 14 * 24 * 3600
# Nobody consumes a DLQ through a visibility window; SQS's own value, set so no tool decides.
DLQ_VISIBILITY_TIMEOUT_S: Final = 30
# 256 KiB: far above an S3 event, and what every deployed stack has had (AWS's default is now
# 1 MiB, pulumi-aws still sends 256 KiB: leaving it out let the engines disagree).
MAX_MESSAGE_BYTES: Final = 262_144


@dataclass(frozen=True)
class QueueSettings:
    """Every attribute of one SQS queue. All queues are FIFO with content-based deduplication."""

    visibility_timeout_s: int
    retention_s: int
    dead_letter_queue: QueueKey | None = None  # redrive after MAX_RECEIVE_COUNT receives
    fifo: bool = True
    content_based_deduplication: bool = True
    deduplication_scope: Literal["queue", "messageGroup"] = "queue"
    throughput_limit: Literal["perQueue", "perMessageGroupId"] = "perQueue"
    max_message_bytes: int = MAX_MESSAGE_BYTES
    delivery_delay_s: int = 0
    receive_wait_s: int = 0  # short polling; the event source long-polls itself
    managed_encryption: bool = True  # SSE-SQS
    accepts_ingest_rule: bool = False  # a queue policy letting the ingest rule send to it
    max_receive_count: int = MAX_RECEIVE_COUNT


def queue_settings() -> dict[QueueKey, QueueSettings]:
    dlq = QueueSettings(visibility_timeout_s=DLQ_VISIBILITY_TIMEOUT_S, retention_s=DLQ_RETENTION_S)
    settings: dict[QueueKey, QueueSettings] = {key: dlq for key in QUEUES}
    settings["ingest"] = QueueSettings(
        visibility_timeout_s=VISIBILITY_TIMEOUT_FACTOR * INGEST_TIMEOUT_S,
        retention_s=INGEST_RETENTION_S,
        dead_letter_queue="ingest-dlq",
        accepts_ingest_rule=True,
    )
    return settings


def redrive_policy(dlq_arn: str) -> dict[str, object]:
    """SQS's redrive document (its own JSON format, the same for both engines)."""
    return {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}


# --- EventBridge: S3 → ingest queue ---------------------------------------------------------

# Every event of the ingest FIFO shares one group: order does not matter, one group keeps the
# EventBridge target simple; throughput is bounded by the batch size and fine for file drops.
INGEST_MESSAGE_GROUP: Final = "incoming"


@dataclass(frozen=True)
class IngestRuleSettings:
    description: str
    enabled: bool
    target_id: str
    message_group: str


INGEST_RULE: Final = IngestRuleSettings(
    description="Objects created under incoming/ in this environment's bucket",
    enabled=True,
    target_id="ingest-queue",
    message_group=INGEST_MESSAGE_GROUP,
)


def rule_state(settings: IngestRuleSettings) -> Literal["ENABLED", "DISABLED"]:
    return "ENABLED" if settings.enabled else "DISABLED"


def lifecycle_status(rule: LifecycleRule) -> Literal["Enabled", "Disabled"]:
    return "Enabled" if rule.enabled else "Disabled"


def ingest_rule_event_pattern(bucket: str) -> dict[str, object]:
    """EventBridge pattern: objects created in this bucket under incoming/."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"prefix": INCOMING_PREFIX}]},
        },
    }


@dataclass(frozen=True)
class EventSourceSettings:
    """The ingest queue → ingest function mapping."""

    batch_size: int
    report_batch_item_failures: bool  # partial batch failures (docs/architecture.md §2)
    enabled: bool


def event_source_response_types(source: EventSourceSettings) -> list[str]:
    return ["ReportBatchItemFailures"] if source.report_batch_item_failures else []


INGEST_SOURCE: Final = EventSourceSettings(
    batch_size=10, report_batch_item_failures=True, enabled=True
)

# --- status table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableIndex:
    name: str
    partition_key: str
    sort_key: str | None
    projection: Literal["ALL", "KEYS_ONLY"]


@dataclass(frozen=True)
class TableSettings:
    partition_key: str
    key_types: Mapping[str, Literal["string", "number"]]  # every attribute a key uses
    indexes: tuple[TableIndex, ...]
    on_demand: bool  # PAY_PER_REQUEST
    encrypted: bool
    ttl_attribute: str
    ttl_enabled: bool
    point_in_time_recovery: bool
    deletion_protection: bool  # off: environments are disposable (docs/architecture.md §2)


STATUS_TABLE: Final = TableSettings(
    partition_key="fileId",
    key_types={"fileId": "string", "objectKey": "string", "receivedAt": "string"},
    # Sorted by arrival, so "every version of a key, newest first" is one query.
    indexes=(TableIndex(OBJECT_KEY_INDEX, "objectKey", "receivedAt", "ALL"),),
    on_demand=True,
    encrypted=True,
    ttl_attribute=TTL_ATTRIBUTE,
    ttl_enabled=True,
    point_in_time_recovery=True,
    deletion_protection=False,
)

# DynamoDB's codes for the model's key types (the same in boto3 and pulumi-aws).
KEY_TYPE_CODES: Final[Mapping[str, Literal["S", "N"]]] = {"string": "S", "number": "N"}


def billing_mode(table: TableSettings) -> Literal["PAY_PER_REQUEST", "PROVISIONED"]:
    return "PAY_PER_REQUEST" if table.on_demand else "PROVISIONED"


def index_keys(index: TableIndex) -> list[tuple[str, Literal["HASH", "RANGE"]]]:
    """An index's key attributes with their DynamoDB roles, partition key first."""
    keys: list[tuple[str, Literal["HASH", "RANGE"]]] = [(index.partition_key, "HASH")]
    if index.sort_key is not None:
        keys.append((index.sort_key, "RANGE"))
    return keys


# --- state machine, roles, log groups -------------------------------------------------------


@dataclass(frozen=True)
class StateMachineSettings:
    type: Literal["STANDARD", "EXPRESS"]
    log_level: Literal["ALL", "ERROR", "FATAL", "OFF"]
    log_execution_data: bool


STATE_MACHINE: Final = StateMachineSettings(
    type="STANDARD", log_level="ERROR", log_execution_data=True
)


def role_policy_name(role_name: str) -> str:
    """Every role has exactly one inline policy, named after it (never a managed policy)."""
    return f"{role_name}-policy"


def log_destination(log_group_arn: str) -> str:
    """Step Functions' log destination: the group's ARN with its streams."""
    return f"{log_group_arn}:*"


# Lambda's log format of every function.
FUNCTION_LOG_FORMAT: Final = "Text"

# --- status API -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiSettings:
    description: str
    endpoint_type: Literal["REGIONAL", "EDGE", "PRIVATE"]
    authorization: Literal["AWS_IAM", "NONE"]  # not public: callers sign with SigV4
    integration: Literal["AWS_PROXY"]
    integration_method: Literal["POST"]  # Lambda proxy integrations call Invoke with POST
    invoke_principal: str  # who may invoke the status function: API Gateway, this API only
    throttled_methods: str  # the method settings' path: every method of the stage
    deployment_description: str
    metrics_enabled: bool
    # Execution logs would go to a log group API Gateway creates itself, outside the 7-day
    # retention; the access log is the API's log.
    execution_log_level: Literal["OFF", "ERROR", "INFO"]
    access_log_format: str


API: Final = ApiSettings(
    description="File status of one market-data pipeline environment (IAM-authorized)",
    endpoint_type="REGIONAL",
    authorization="AWS_IAM",
    integration="AWS_PROXY",
    integration_method="POST",
    invoke_principal="apigateway.amazonaws.com",
    throttled_methods="*/*",
    deployment_description="Status API",
    metrics_enabled=True,
    execution_log_level="OFF",
    access_log_format=json.dumps(
        {
            "requestId": "$context.requestId",
            "requestTime": "$context.requestTime",
            "ip": "$context.identity.sourceIp",
            "caller": "$context.identity.caller",
            "userArn": "$context.identity.userArn",
            "httpMethod": "$context.httpMethod",
            "resourcePath": "$context.resourcePath",
            "path": "$context.path",
            "status": "$context.status",
            "protocol": "$context.protocol",
            "responseLength": "$context.responseLength",
            "integrationLatency": "$context.integrationLatency",
            "errorMessage": "$context.error.message",
        },
        separators=(",", ":"),
    ),
)


def api_invoke_source_arn(execution_arn: str) -> str:
    """The status function's permission: this API's GET methods only, in its own stage."""
    return f"{execution_arn}/{API_STAGE}/GET/*"


def api_request_parameters(route: Route) -> dict[str, bool]:
    """A route's required request parameters, in API Gateway's spelling (both engines')."""
    return {
        **{f"method.request.path.{name}": True for name in route.path_parameters},
        **{f"method.request.querystring.{name}": True for name in route.query},
    }


# Pulumi logical-name suffixes of the API's resources, fixed so that deployed stacks keep their
# URNs; `resource_paths()` (from the route table) must be exactly these keys (tests check).
API_RESOURCE_KEYS: Final[Mapping[str, str]] = {
    "/status": "status",
    "/status/{fileId}": "status-file",
    "/files": "files",
}

# --- inventory ------------------------------------------------------------------------------

# How the emulator holds a resource: as one of its own ("resource"), as a setting of the
# resource it belongs to ("part", e.g. a bucket's versioning), or not at all ("absent", for the
# reasons in tests/stacks/test_engines_agree.py's EMULATOR_DIFFERENCES).
LocalForm = Literal["resource", "part", "absent"]
# A resource only some environments have, and the setting that asks for it.
OptionalBy = Literal["alarm_email"]


@dataclass(frozen=True)
class InventoryItem:
    type: str  # Pulumi's type token; both engines' progress events use it
    key: str  # which one: "function:ingest", "queue:ingest-dlq", "bucket" …
    local: LocalForm
    optional_by: OptionalBy | None = None

    def present(self, config: PipelineConfig) -> bool:
        return self.optional_by is None or getattr(config, self.optional_by) is not None


def _inventory() -> tuple[InventoryItem, ...]:
    """Every resource, in the emulator's apply order (destroy runs it backwards)."""

    def items(
        typ: str, keys: list[str], local: LocalForm, optional_by: OptionalBy | None = None
    ) -> list[InventoryItem]:
        return [InventoryItem(typ, key, local, optional_by) for key in keys]

    log_groups = [f"function:{fn}" for fn in FUNCTIONS] + ["state-machine", "api-access"]
    roles = [f"function:{fn}" for fn in FUNCTIONS] + ["state-machine"]
    s3 = "aws:s3/"
    return tuple(
        [
            *items("aws:cloudwatch/logGroup:LogGroup", log_groups, "resource"),
            *items("aws:sqs/queue:Queue", [f"queue:{key}" for key in QUEUES], "resource"),
            *items("aws:sqs/queuePolicy:QueuePolicy", ["queue:ingest"], "part"),
            *items(f"{s3}bucket:Bucket", ["bucket"], "resource"),
            *items(f"{s3}bucketPublicAccessBlock:BucketPublicAccessBlock", ["bucket"], "part"),
            *items(
                f"{s3}bucketServerSideEncryptionConfiguration:"
                "BucketServerSideEncryptionConfiguration",
                ["bucket"],
                "part",
            ),
            *items(f"{s3}bucketVersioning:BucketVersioning", ["bucket"], "part"),
            *items(
                f"{s3}bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                ["bucket"],
                "part",
            ),
            *items(f"{s3}bucketPolicy:BucketPolicy", ["bucket"], "absent"),
            *items(f"{s3}bucketNotification:BucketNotification", ["bucket"], "part"),
            *items("aws:dynamodb/table:Table", ["status-table"], "resource"),
            *items("aws:iam/role:Role", roles, "resource"),
            *items("aws:iam/rolePolicy:RolePolicy", roles, "part"),
            *items(
                "aws:lambda/function:Function", [f"function:{fn}" for fn in FUNCTIONS], "resource"
            ),
            *items("aws:sfn/stateMachine:StateMachine", ["state-machine"], "resource"),
            *items("aws:cloudwatch/eventRule:EventRule", ["ingest-rule"], "resource"),
            *items("aws:cloudwatch/eventTarget:EventTarget", ["ingest-rule"], "part"),
            *items(
                "aws:lambda/eventSourceMapping:EventSourceMapping", ["ingest-source"], "resource"
            ),
            *items("aws:kms/key:Key", ["alarm-key"], "resource"),
            *items("aws:kms/alias:Alias", ["alarm-key"], "part"),
            *items("aws:sns/topic:Topic", ["alarm-topic"], "resource"),
            *items("aws:sns/topicPolicy:TopicPolicy", ["alarm-topic"], "part"),
            *items(
                "aws:sns/topicSubscription:TopicSubscription",
                ["alarm-topic"],
                "part",
                "alarm_email",
            ),
            *items(
                "aws:cloudwatch/metricAlarm:MetricAlarm",
                [f"alarm:{key}" for key in ALARMS],
                "resource",
            ),
            *items("aws:apigateway/restApi:RestApi", ["api"], "absent"),
            *items("aws:apigateway/resource:Resource", list(resource_paths()), "absent"),
            *items("aws:apigateway/method:Method", [r.key for r in STATUS_ROUTES], "absent"),
            *items(
                "aws:apigateway/integration:Integration", [r.key for r in STATUS_ROUTES], "absent"
            ),
            *items("aws:lambda/permission:Permission", ["api"], "absent"),
            *items("aws:apigateway/deployment:Deployment", ["api"], "absent"),
            *items("aws:apigateway/stage:Stage", ["api"], "absent"),
            *items("aws:apigateway/methodSettings:MethodSettings", ["api"], "absent"),
        ]
    )


INVENTORY: Final[tuple[InventoryItem, ...]] = _inventory()


def inventory(config: PipelineConfig) -> tuple[InventoryItem, ...]:
    """The resources of one environment: the inventory without the optional ones it lacks."""
    return tuple(item for item in INVENTORY if item.present(config))


def inventory_counts(config: PipelineConfig) -> dict[str, int]:
    """How many resources of each type the Pulumi component registers for `config`."""
    counts: dict[str, int] = {}
    for item in inventory(config):
        counts[item.type] = counts.get(item.type, 0) + 1
    return counts


# --- stack outputs --------------------------------------------------------------------------

T = TypeVar("T")

# The stack outputs (docs/architecture.md §2, a contract), in order: every engine reports
# exactly these, all strings. Each names what provides it: (kind, which).
_OUTPUT_SOURCES: Final[dict[str, tuple[str, str]]] = {
    "bucketName": ("bucket", ""),
    "ingestQueueUrl": ("queue", "ingest"),
    "ingestDlqUrl": ("queue", "ingest-dlq"),
    "validatorDlqUrl": ("queue", "validator-dlq"),
    "processorDlqUrl": ("queue", "processor-dlq"),
    "aggregatorDlqUrl": ("queue", "aggregator-dlq"),
    "statusTableName": ("table", ""),
    "stateMachineArn": ("state-machine", ""),
    "validatorFunctionName": ("function", "validator"),
    "processorFunctionName": ("function", "processor"),
    "aggregatorFunctionName": ("function", "aggregator"),
    "ingestFunctionName": ("function", "ingest"),
    "statusFunctionName": ("function", "status"),
    "apiEndpoint": ("api", ""),
    "alarmTopicArn": ("alarm-topic", ""),
}
STACK_OUTPUTS: Final[tuple[str, ...]] = tuple(_OUTPUT_SOURCES)


def stack_outputs(
    *,
    bucket_name: T,
    queue_urls: Mapping[QueueKey, T],
    table_name: T,
    state_machine_arn: T,
    function_names: Mapping[FunctionName, T],
    api_endpoint: T,
    alarm_topic_arn: T,
) -> dict[str, T]:
    """The outputs under their contract names, from each engine's own values."""
    single = {
        "bucket": bucket_name,
        "table": table_name,
        "state-machine": state_machine_arn,
        "api": api_endpoint,
        "alarm-topic": alarm_topic_arn,
    }
    outputs: dict[str, T] = {}
    for output, (kind, which) in _OUTPUT_SOURCES.items():
        if kind == "queue":
            outputs[output] = queue_urls[which]  # type: ignore[index]
        elif kind == "function":
            outputs[output] = function_names[which]  # type: ignore[index]
        else:
            outputs[output] = single[kind]
    return outputs
