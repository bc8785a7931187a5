"""Apply one environment's pipeline (DESIGN §2, from `stacks.spec`) to the emulator with boto3.

The local engine's counterpart of `stacks.pipeline`: the same names, attributes, policies,
environments and state machine, created, updated in place or deleted resource by resource.
Every resource is read first and only what differs is written, so applying twice changes
nothing. Differences from the Pulumi component, each forced by the emulator:
- no API Gateway: moto does not serve AWS_PROXY integrations, so the local engine serves the
  status API itself and passes its base URL in as `api_endpoint`;
- no Powertools layer (moto rejects another account's layer) and no function `LoggingConfig`
  (moto drops it): the local runtime imports Powertools from the service's own environment and
  the functions log to their default groups, which are these;
- the SQS event source mapping is stored, but moto's own delivery is switched off
  (`lambda_dispatch`); `event_source` moves the messages;
- no TLS-only bucket policy: moto enforces bucket policies on object requests but ignores
  their conditions, so its Deny-unless-TLS statements would deny every upload (and the
  emulator speaks plain HTTP on loopback anyway);
- moto never returns `EventBridgeConfiguration` from GetBucketNotificationConfiguration, so the
  applier re-puts it on every apply (an idempotent write) without reporting a change.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, cast
from urllib.parse import unquote

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.engines.base import EngineEvent, EventType
from provisioner.errors import EngineError, OperationCancelledError
from stacks import spec
from stacks.config import PipelineConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TagTypeDef as DynamoDBTagTypeDef
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_iam.type_defs import TagTypeDef as IAMTagTypeDef
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        ObjectIdentifierTypeDef,
        PublicAccessBlockConfigurationTypeDef,
        ServerSideEncryptionRuleTypeDef,
    )
    from mypy_boto3_s3.type_defs import TagTypeDef as S3TagTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_sts import STSClient

logger = structlog.get_logger(__name__)

DEFAULT_ACCOUNT_ID: Final = "123456789012"  # moto's account
HANDLERS_DIR: Final = spec.HANDLERS_DIR

ResourceStep = Literal["create", "update", "same", "delete"]
EventSink = Callable[[EngineEvent], None]
StopCheck = Callable[[], bool]

# Resource types, spelled as Pulumi's tokens so both engines' events read the same.
LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"
QUEUE: Final = "aws:sqs/queue:Queue"
BUCKET: Final = "aws:s3/bucket:Bucket"
TABLE: Final = "aws:dynamodb/table:Table"
ROLE: Final = "aws:iam/role:Role"
FUNCTION: Final = "aws:lambda/function:Function"
STATE_MACHINE: Final = "aws:sfn/stateMachine:StateMachine"
EVENT_RULE: Final = "aws:cloudwatch/eventRule:EventRule"
EVENT_SOURCE_MAPPING: Final = "aws:lambda/eventSourceMapping:EventSourceMapping"

INGEST_TARGET_ID: Final = "ingest-queue"
RULE_DESCRIPTION: Final = "Objects created under incoming/ in this environment's bucket"


def _noop_sink(event: EngineEvent) -> None:
    del event


def _never() -> bool:
    return False


# --- clients --------------------------------------------------------------------------------


class AwsClients:
    """The boto3 clients the applier (and the emulator's tests) use, for one region.

    Each client is created on first use (building one costs tens of milliseconds).
    """

    def __init__(
        self,
        session: boto3.session.Session,
        *,
        region: str,
        endpoint_url: str | None = None,
    ) -> None:
        self.region = region
        self._session = session
        self._options: dict[str, Any] = {
            "region_name": region,
            "config": Config(
                retries={"max_attempts": 3, "mode": "standard"},
                # Path-style S3 URLs: an emulator on an IP address has no per-bucket hosts.
                s3={"addressing_style": "path"},
            ),
        }
        if endpoint_url is not None:
            self._options["endpoint_url"] = endpoint_url

    @classmethod
    def for_endpoint(
        cls,
        endpoint_url: str,
        *,
        region: str,
        access_key_id: str = "testing",
        secret_access_key: str = "testing",
    ) -> AwsClients:
        """Clients of an emulator at `endpoint_url` (its credentials are never checked)."""
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        return cls(session, region=region, endpoint_url=endpoint_url)

    @classmethod
    def from_session(
        cls, session: boto3.session.Session | None = None, *, region: str
    ) -> AwsClients:
        """Clients of a session (default: the ambient one, e.g. inside `moto.mock_aws`)."""
        return cls(session or boto3.session.Session(region_name=region), region=region)

    def __repr__(self) -> str:
        return f"AwsClients(region={self.region!r}, endpoint={self._options.get('endpoint_url')!r})"

    @cached_property
    def s3(self) -> S3Client:
        return self._session.client("s3", **self._options)

    @cached_property
    def sqs(self) -> SQSClient:
        return self._session.client("sqs", **self._options)

    @cached_property
    def events(self) -> EventBridgeClient:
        return self._session.client("events", **self._options)

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", **self._options)

    @cached_property
    def stepfunctions(self) -> SFNClient:
        return self._session.client("stepfunctions", **self._options)

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._session.client("lambda", **self._options)

    @cached_property
    def iam(self) -> IAMClient:
        return self._session.client("iam", **self._options)

    @cached_property
    def logs(self) -> CloudWatchLogsClient:
        return self._session.client("logs", **self._options)

    @cached_property
    def sts(self) -> STSClient:
        return self._session.client("sts", **self._options)

    def account_id(self) -> str:
        return self.sts.get_caller_identity()["Account"]


# --- derived names and code -----------------------------------------------------------------


def pipeline_arns(config: PipelineConfig, account_id: str) -> spec.PipelineArns:
    """Every ARN the policies and the definition use, derived from names (AWS's fixed format)."""
    names = spec.names(config, account_id)
    region = config.region

    def arn(service: str, resource: str) -> str:
        return f"arn:aws:{service}:{region}:{account_id}:{resource}"

    return spec.PipelineArns(
        bucket=f"arn:aws:s3:::{names.bucket}",
        ingest_queue=arn("sqs", names.ingest_queue),
        ingest_dlq=arn("sqs", names.ingest_dlq),
        stage_dlqs={stage: arn("sqs", name) for stage, name in names.stage_dlqs.items()},
        status_table=arn("dynamodb", f"table/{names.status_table}"),
        state_machine=arn("states", f"stateMachine:{names.state_machine}"),
        functions={fn: arn("lambda", f"function:{name}") for fn, name in names.functions.items()},
        function_log_groups={
            fn: arn("logs", f"log-group:{group}") for fn, group in names.function_log_groups.items()
        },
        ingest_rule=arn("events", f"rule/{names.ingest_rule}"),
    )


def handlers_archive(handlers_dir: Path = HANDLERS_DIR) -> bytes:
    """The functions' code as a zip of `spec.handler_sources`, like `stacks.pipeline`'s.

    Deterministic (sorted entries, fixed timestamps and modes), so an unchanged tree gives the
    same CodeSha256 and a second apply does not redeploy the functions.
    """
    try:
        sources = spec.handler_sources(handlers_dir)
    except ValueError as error:
        raise EngineError(str(error)) from None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sources:
            info = zipfile.ZipInfo(name)
            info.date_time = (1980, 1, 1, 0, 0, 0)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


# --- plans and resources --------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedResource:
    """One resource the applier manages: its physical name and type."""

    name: str
    type: str


@dataclass
class _Plan:
    """What applying one resource takes: the writes for everything that differs."""

    exists: bool
    changes: list[str] = field(default_factory=list)
    actions: list[Callable[[], object]] = field(default_factory=list)

    def change(self, what: str, action: Callable[[], object]) -> None:
        if self.exists:
            self.changes.append(what)
        self.actions.append(action)

    @property
    def step(self) -> ResourceStep:
        if not self.exists:
            return "create"
        return "update" if self.changes else "same"


class _Context:
    """Everything the resources of one environment share during one apply or destroy."""

    def __init__(
        self,
        config: PipelineConfig,
        clients: AwsClients | None,
        account_id: str,
        retry: spec.RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self._clients = clients
        self.account_id = account_id
        self.names = spec.names(config, account_id)
        self.arns = pipeline_arns(config, account_id)
        self.tags = config.resource_tags()
        self.retry = retry or spec.RetryPolicy()
        self._queue_urls: dict[str, str] = {}

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            raise RuntimeError("this context only describes resources")
        return self._clients

    @cached_property
    def code(self) -> bytes:
        return handlers_archive()

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.config.region}:{self.account_id}:{resource}"

    def queue_url(self, name: str) -> str:
        if name not in self._queue_urls:
            self._queue_urls[name] = self.clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._queue_urls[name]


class _Resource(ABC):
    type: ClassVar[str]
    kind: ClassVar[str]  # for messages: "queue", "function" …

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def plan(self, ctx: _Context) -> _Plan:
        """Read the resource and list the writes that make it match the spec."""

    @abstractmethod
    def delete(self, ctx: _Context) -> bool:
        """Delete the resource; False if it did not exist."""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _absent(exc: ClientError, *codes: str) -> bool:
    return _error_code(exc) in codes


def _contains(desired: Any, actual: Any) -> bool:
    """`actual` has every field of `desired` with the same value (lists: same length, in order).

    Services add fields of their own to what they return; only ours are compared.
    """
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and _contains(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(_contains(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual)


def _json_attribute(value: str | None) -> Any:
    return json.loads(value) if value else None


def _tag_diff(
    current: Mapping[str, str], desired: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and tag keys to remove; `aws:` tags belong to AWS and are left alone."""
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    to_remove = [key for key in current if key not in desired and not key.startswith("aws:")]
    return to_set, to_remove


def _plan_tags(
    plan: _Plan,
    current: Mapping[str, str],
    desired: Mapping[str, str],
    tag: Callable[[dict[str, str]], object],
    untag: Callable[[list[str]], object],
) -> None:
    to_set, to_remove = _tag_diff(current, desired)

    def retag() -> None:
        if to_set:
            tag(to_set)
        if to_remove:
            untag(to_remove)

    if to_set or to_remove:
        plan.change("tags", retag)


class _LogGroup(_Resource):
    type = LOG_GROUP
    kind = "log group"

    def _arn(self, ctx: _Context) -> str:
        return ctx.arn("logs", f"log-group:{self.name}")

    def _find(self, ctx: _Context) -> Mapping[str, Any] | None:
        groups = ctx.clients.logs.describe_log_groups(logGroupNamePrefix=self.name)["logGroups"]
        return next((g for g in groups if g.get("logGroupName") == self.name), None)

    def plan(self, ctx: _Context) -> _Plan:
        logs = ctx.clients.logs
        retention = ctx.config.log_retention_days
        group = self._find(ctx)
        plan = _Plan(group is not None)
        if group is None:
            plan.change(
                "log group", lambda: logs.create_log_group(logGroupName=self.name, tags=ctx.tags)
            )
        if group is None or group.get("retentionInDays") != retention:
            plan.change(
                "retention",
                lambda: logs.put_retention_policy(
                    logGroupName=self.name, retentionInDays=retention
                ),
            )
        if group is not None:
            arn = self._arn(ctx)
            current = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
            _plan_tags(
                plan,
                current,
                ctx.tags,
                lambda tags: logs.tag_resource(resourceArn=arn, tags=tags),
                lambda keys: logs.untag_resource(resourceArn=arn, tagKeys=keys),
            )
        return plan

    def delete(self, ctx: _Context) -> bool:
        try:
            ctx.clients.logs.delete_log_group(logGroupName=self.name)
        except ClientError as exc:
            if _absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


class _Queue(_Resource):
    type = QUEUE
    kind = "queue"

    def __init__(
        self,
        name: str,
        attributes: Mapping[str, str],
        dead_letter_queue: str | None = None,
        with_policy: bool = False,
    ) -> None:
        super().__init__(name)
        self.attributes = dict(attributes)
        self.dead_letter_queue = dead_letter_queue
        self.with_policy = with_policy

    def _desired(self, ctx: _Context) -> dict[QueueAttributeNameType, str]:
        desired = cast(
            "dict[QueueAttributeNameType, str]",
            {**self.attributes, "SqsManagedSseEnabled": "true"},
        )
        if self.dead_letter_queue is not None:
            dlq_arn = ctx.arn("sqs", self.dead_letter_queue)
            desired["RedrivePolicy"] = json.dumps(spec.redrive_policy(dlq_arn))
        if self.with_policy:
            desired["Policy"] = json.dumps(spec.ingest_queue_policy(ctx.arns))
        return desired

    def _url(self, ctx: _Context) -> str | None:
        try:
            return ctx.clients.sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
        except ClientError as exc:
            if _absent(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return None
            raise

    def plan(self, ctx: _Context) -> _Plan:
        sqs = ctx.clients.sqs
        desired = self._desired(ctx)
        url = self._url(ctx)
        plan = _Plan(url is not None)
        if url is None:
            plan.change(
                "queue",
                lambda: sqs.create_queue(QueueName=self.name, Attributes=desired, tags=ctx.tags),
            )
            return plan
        current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if current.get("FifoQueue", "false") != desired.get("FifoQueue", "false"):
            raise EngineError(f"queue {self.name}: FifoQueue cannot change; re-create it")
        differing: dict[QueueAttributeNameType, str] = {
            key: value
            for key, value in desired.items()
            if key != "FifoQueue" and not _same_queue_attribute(key, current.get(key), value)
        }
        if differing:
            # Every attribute, not just the differing ones: moto resets an omitted Policy.
            settable: dict[QueueAttributeNameType, str] = {
                key: value for key, value in desired.items() if key != "FifoQueue"
            }
            plan.change(
                ", ".join(sorted(differing)),
                lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes=settable),
            )
        _plan_tags(
            plan,
            sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
            ctx.tags,
            lambda tags: sqs.tag_queue(QueueUrl=url, Tags=tags),
            lambda keys: sqs.untag_queue(QueueUrl=url, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: _Context) -> bool:
        url = self._url(ctx)
        if url is None:
            return False
        ctx.clients.sqs.delete_queue(QueueUrl=url)
        return True


def _same_queue_attribute(name: QueueAttributeNameType, current: str | None, desired: str) -> bool:
    if name in ("RedrivePolicy", "Policy", "RedriveAllowPolicy"):
        # JSON attributes: compared as documents (services reorder keys, stringify numbers).
        def normal(value: str | None) -> Any:
            return json.loads(json.dumps(_json_attribute(value)), parse_int=str)

        return bool(normal(current) == normal(desired))
    return current == desired


class _Bucket(_Resource):
    type = BUCKET
    kind = "bucket"

    def _exists(self, ctx: _Context) -> bool:
        try:
            ctx.clients.s3.head_bucket(Bucket=self.name)
        except ClientError as exc:
            if _absent(exc, "404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    def _read(self, ctx: _Context, call: Callable[[], Any], *absent: str) -> Any:
        try:
            return call()
        except ClientError as exc:
            if _absent(exc, *absent):
                return None
            raise

    def plan(self, ctx: _Context) -> _Plan:
        s3 = ctx.clients.s3
        bucket = self.name
        exists = self._exists(ctx)
        plan = _Plan(exists)
        if not exists:
            create: dict[str, Any] = {"Bucket": bucket}
            if ctx.config.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": ctx.config.region}
            plan.change("bucket", lambda: s3.create_bucket(**create))

        def read(call: Callable[[], Any], *absent: str) -> Any:
            return self._read(ctx, call, *absent) if exists else None

        # S3 rejects concurrent configuration changes of one bucket, and the noncurrent-version
        # rules need versioning first: the same order as stacks.pipeline. No bucket policy
        # (see the module docstring).
        block: PublicAccessBlockConfigurationTypeDef = {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        current_block = read(
            lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
            "NoSuchPublicAccessBlockConfiguration",
        )
        if current_block != block:
            plan.change(
                "public access block",
                lambda: s3.put_public_access_block(
                    Bucket=bucket, PublicAccessBlockConfiguration=block
                ),
            )

        sse: list[ServerSideEncryptionRuleTypeDef] = [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
        current_sse = read(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
                "Rules"
            ],
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        if not _contains(sse, current_sse):
            plan.change(
                "encryption",
                lambda: s3.put_bucket_encryption(
                    Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": sse}
                ),
            )

        versioning = read(lambda: s3.get_bucket_versioning(Bucket=bucket).get("Status"))
        if versioning != "Enabled":
            plan.change(
                "versioning",
                lambda: s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                ),
            )

        rules = spec.bucket_lifecycle_rules(ctx.config)
        current_rules = read(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
            "NoSuchLifecycleConfiguration",
        )
        if not _contains(rules, current_rules):
            plan.change(
                "lifecycle",
                lambda: s3.put_bucket_lifecycle_configuration(
                    Bucket=bucket,
                    LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
                ),
            )

        def notify() -> object:
            return s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )

        notification = read(lambda: s3.get_bucket_notification_configuration(Bucket=bucket))
        others = [
            key
            for key in (
                "TopicConfigurations",
                "QueueConfigurations",
                "LambdaFunctionConfigurations",
            )
            if notification and notification.get(key)
        ]
        if notification is None or others:
            plan.change("notification", notify)
        elif "EventBridgeConfiguration" not in notification:
            # moto never returns EventBridgeConfiguration: re-put it, as a no-change write.
            plan.actions.append(notify)

        current_tags = read(
            lambda: {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]},
            "NoSuchTagSet",
        )
        if (current_tags or {}) != ctx.tags:
            tag_set: list[S3TagTypeDef] = [
                {"Key": key, "Value": value} for key, value in ctx.tags.items()
            ]
            plan.change(
                "tags", lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_set})
            )
        return plan

    def delete(self, ctx: _Context) -> bool:
        if not self._exists(ctx):
            return False
        s3 = ctx.clients.s3
        # Versioned: every version and every delete marker, page by page from the start
        # (deleting while paginating would skip entries), at most 1000 per DeleteObjects.
        while True:
            page = s3.list_object_versions(Bucket=self.name, MaxKeys=1000)
            entries: list[ObjectIdentifierTypeDef] = [
                {"Key": entry["Key"], "VersionId": entry["VersionId"]}
                for entry in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
            ]
            if not entries:
                break
            for start in range(0, len(entries), 1000):
                result = s3.delete_objects(
                    Bucket=self.name,
                    Delete={"Objects": entries[start : start + 1000], "Quiet": True},
                )
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise EngineError(
                        f"bucket {self.name}: could not delete {first.get('Key')}: "
                        f"{first.get('Code')} {first.get('Message')}"
                    )
        for upload in s3.list_multipart_uploads(Bucket=self.name).get("Uploads", []):
            s3.abort_multipart_upload(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        s3.delete_bucket(Bucket=self.name)
        return True


class _Table(_Resource):
    type = TABLE
    kind = "table"

    def plan(self, ctx: _Context) -> _Plan:
        dynamodb = ctx.clients.dynamodb
        schema = spec.status_table_schema()
        arn = ctx.arns.status_table
        try:
            table: Mapping[str, Any] | None = dynamodb.describe_table(TableName=self.name)["Table"]
        except ClientError as exc:
            if not _absent(exc, "ResourceNotFoundException"):
                raise
            table = None
        plan = _Plan(table is not None)
        if table is None:
            table_tags: list[DynamoDBTagTypeDef] = [
                {"Key": key, "Value": value} for key, value in ctx.tags.items()
            ]
            plan.change(
                "table",
                lambda: dynamodb.create_table(TableName=self.name, Tags=table_tags, **schema),
            )
        else:
            self._check_schema(table, schema)
            if table.get("SSEDescription", {}).get("Status") not in ("ENABLED", "ENABLING"):
                plan.change(
                    "encryption",
                    lambda: dynamodb.update_table(
                        TableName=self.name, SSESpecification={"Enabled": True}
                    ),
                )
        ttl = (
            dynamodb.describe_time_to_live(TableName=self.name)["TimeToLiveDescription"]
            if table is not None
            else {}
        )
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or (
            ttl.get("AttributeName") != spec.TTL_ATTRIBUTE
        ):
            plan.change(
                "ttl",
                lambda: dynamodb.update_time_to_live(
                    TableName=self.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.TTL_ATTRIBUTE},
                ),
            )
        pitr = (
            dynamodb.describe_continuous_backups(TableName=self.name)[
                "ContinuousBackupsDescription"
            ]
            .get("PointInTimeRecoveryDescription", {})
            .get("PointInTimeRecoveryStatus")
            if table is not None
            else None
        )
        if (pitr == "ENABLED") != spec.STATUS_TABLE_PITR:
            plan.change(
                "point-in-time recovery",
                lambda: dynamodb.update_continuous_backups(
                    TableName=self.name,
                    PointInTimeRecoverySpecification={
                        "PointInTimeRecoveryEnabled": spec.STATUS_TABLE_PITR
                    },
                ),
            )
        if table is not None:
            current = {
                t["Key"]: t["Value"]
                for t in dynamodb.list_tags_of_resource(ResourceArn=arn).get("Tags", [])
            }
            _plan_tags(
                plan,
                current,
                ctx.tags,
                lambda tags: dynamodb.tag_resource(
                    ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
                ),
                lambda keys: dynamodb.untag_resource(ResourceArn=arn, TagKeys=keys),
            )
        return plan

    def _check_schema(self, table: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        indexes = {
            index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        desired_indexes = {
            index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
            for index in schema["GlobalSecondaryIndexes"]
        }
        if (
            table["KeySchema"] != schema["KeySchema"]
            or billing != schema["BillingMode"]
            or indexes != desired_indexes
        ):
            # No config knob changes the schema; only an out-of-band change can get here.
            raise EngineError(
                f"table {self.name}: its keys, indexes or billing mode differ from the spec; "
                "the local engine does not replace tables (destroy and re-create the environment)"
            )

    def delete(self, ctx: _Context) -> bool:
        try:
            ctx.clients.dynamodb.delete_table(TableName=self.name)
        except ClientError as exc:
            if _absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


class _Role(_Resource):
    type = ROLE
    kind = "role"

    def __init__(
        self,
        name: str,
        trust: Callable[[_Context], Mapping[str, Any]],
        policy: Callable[[_Context], Mapping[str, Any]],
    ) -> None:
        super().__init__(name)
        self._trust = trust
        self._policy = policy
        self.policy_name = f"{name}-policy"  # as stacks.pipeline names it

    def plan(self, ctx: _Context) -> _Plan:
        iam = ctx.clients.iam
        trust = dict(self._trust(ctx))
        policy = dict(self._policy(ctx))
        try:
            role: Mapping[str, Any] | None = iam.get_role(RoleName=self.name)["Role"]
        except ClientError as exc:
            if not _absent(exc, "NoSuchEntity"):
                raise
            role = None
        plan = _Plan(role is not None)
        put_policy = lambda: iam.put_role_policy(  # noqa: E731
            RoleName=self.name, PolicyName=self.policy_name, PolicyDocument=json.dumps(policy)
        )
        if role is None:
            role_tags: list[IAMTagTypeDef] = [
                {"Key": key, "Value": value} for key, value in ctx.tags.items()
            ]
            plan.change(
                "role",
                lambda: iam.create_role(
                    RoleName=self.name, AssumeRolePolicyDocument=json.dumps(trust), Tags=role_tags
                ),
            )
            plan.change("policy", put_policy)
            return plan
        if _policy_document(role["AssumeRolePolicyDocument"]) != trust:
            plan.change(
                "trust policy",
                lambda: iam.update_assume_role_policy(
                    RoleName=self.name, PolicyDocument=json.dumps(trust)
                ),
            )
        inline = iam.list_role_policies(RoleName=self.name)["PolicyNames"]
        current_policy = (
            _policy_document(
                iam.get_role_policy(RoleName=self.name, PolicyName=self.policy_name)[
                    "PolicyDocument"
                ]
            )
            if self.policy_name in inline
            else None
        )
        if current_policy != policy:
            plan.change("policy", put_policy)
        # Exactly one inline policy and no managed policy (they grant more than the spec).
        for extra in (name for name in inline if name != self.policy_name):
            plan.change(
                f"policy {extra}",
                partial(iam.delete_role_policy, RoleName=self.name, PolicyName=extra),
            )
        attached = iam.list_attached_role_policies(RoleName=self.name)["AttachedPolicies"]
        for managed in attached:
            arn = managed["PolicyArn"]
            plan.change(
                f"managed policy {arn}",
                partial(iam.detach_role_policy, RoleName=self.name, PolicyArn=arn),
            )
        current_tags = {
            t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=self.name)["Tags"]
        }
        _plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: iam.tag_role(
                RoleName=self.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            ),
            lambda keys: iam.untag_role(RoleName=self.name, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: _Context) -> bool:
        iam = ctx.clients.iam
        try:
            for name in iam.list_role_policies(RoleName=self.name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=self.name, PolicyName=name)
            for managed in iam.list_attached_role_policies(RoleName=self.name)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=self.name, PolicyArn=managed["PolicyArn"])
            iam.delete_role(RoleName=self.name)
        except ClientError as exc:
            if _absent(exc, "NoSuchEntity"):
                return False
            raise
        return True


def _policy_document(document: Any) -> Any:
    # IAM returns documents URL-encoded; boto3 usually decodes them already.
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


class _Function(_Resource):
    type = FUNCTION
    kind = "function"

    def __init__(self, name: str, function: spec.FunctionName) -> None:
        super().__init__(name)
        self.function = function

    def _configuration(self, ctx: _Context) -> dict[str, Any]:
        fn_spec = spec.function_specs(ctx.config)[self.function]
        environment = spec.function_environment(
            self.function, ctx.config, ctx.names, ctx.arns.state_machine
        )
        return {
            "Role": f"arn:aws:iam::{ctx.account_id}:role/{ctx.names.function_roles[self.function]}",
            "Handler": fn_spec.handler,
            "Runtime": spec.LAMBDA_RUNTIME,
            "Description": fn_spec.description,
            "Timeout": fn_spec.timeout_s,
            "MemorySize": fn_spec.memory_mb,
            "Environment": {"Variables": environment},
        }

    def plan(self, ctx: _Context) -> _Plan:
        lambda_ = ctx.clients.lambda_
        desired = self._configuration(ctx)
        code_sha = base64.b64encode(hashlib.sha256(ctx.code).digest()).decode()
        try:
            current: Mapping[str, Any] | None = lambda_.get_function(FunctionName=self.name)[
                "Configuration"
            ]
        except ClientError as exc:
            if not _absent(exc, "ResourceNotFoundException"):
                raise
            current = None
        plan = _Plan(current is not None)
        if current is None:
            plan.change(
                "function",
                lambda: lambda_.create_function(
                    FunctionName=self.name,
                    Code={"ZipFile": ctx.code},
                    Architectures=[spec.LAMBDA_ARCHITECTURE],
                    Tags=ctx.tags,
                    **desired,
                ),
            )
            return plan
        differing = sorted(key for key, value in desired.items() if current.get(key) != value)
        if differing:
            plan.change(
                ", ".join(differing),
                lambda: lambda_.update_function_configuration(FunctionName=self.name, **desired),
            )
        if current.get("CodeSha256") != code_sha:
            plan.change(
                "code",
                lambda: lambda_.update_function_code(FunctionName=self.name, ZipFile=ctx.code),
            )
        arn = current["FunctionArn"]
        _plan_tags(
            plan,
            lambda_.list_tags(Resource=arn).get("Tags", {}),
            ctx.tags,
            lambda tags: lambda_.tag_resource(Resource=arn, Tags=tags),
            lambda keys: lambda_.untag_resource(Resource=arn, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: _Context) -> bool:
        try:
            ctx.clients.lambda_.delete_function(FunctionName=self.name)
        except ClientError as exc:
            if _absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


class _StateMachine(_Resource):
    type = STATE_MACHINE
    kind = "state machine"

    def _desired(self, ctx: _Context) -> dict[str, Any]:
        names = ctx.names
        targets = spec.StateMachineTargets(
            status_table=names.status_table,
            functions={stage: ctx.arns.functions[stage] for stage in spec.STAGE_FUNCTIONS},
            stage_dlq_urls={
                stage: ctx.queue_url(names.stage_dlqs[stage]) for stage in spec.STAGE_FUNCTIONS
            },
        )
        log_group_arn = ctx.arn("logs", f"log-group:{names.state_machine_log_group}")
        return {
            "definition": spec.state_machine_definition(
                targets, ctx.retry, spec.execution_timeout_s(ctx.config, ctx.retry)
            ),
            "roleArn": f"arn:aws:iam::{ctx.account_id}:role/{names.state_machine_role}",
            "loggingConfiguration": {
                "level": "ERROR",
                "includeExecutionData": True,
                "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": f"{log_group_arn}:*"}}],
            },
        }

    def _describe(self, ctx: _Context) -> Mapping[str, Any] | None:
        try:
            return ctx.clients.stepfunctions.describe_state_machine(
                stateMachineArn=ctx.arns.state_machine
            )
        except ClientError as exc:
            if _absent(exc, "StateMachineDoesNotExist"):
                return None
            raise

    def plan(self, ctx: _Context) -> _Plan:
        sfn = ctx.clients.stepfunctions
        arn = ctx.arns.state_machine
        desired = self._desired(ctx)
        definition = json.dumps(desired["definition"])
        current = self._describe(ctx)
        plan = _Plan(current is not None)
        if current is None:
            plan.change(
                "state machine",
                lambda: sfn.create_state_machine(
                    name=self.name,
                    definition=definition,
                    roleArn=desired["roleArn"],
                    type="STANDARD",
                    loggingConfiguration=desired["loggingConfiguration"],
                    tags=[{"key": key, "value": value} for key, value in ctx.tags.items()],
                ),
            )
            return plan
        differing = []
        if json.loads(current["definition"]) != desired["definition"]:
            differing.append("definition")
        if current.get("roleArn") != desired["roleArn"]:
            differing.append("role")
        if not _contains(desired["loggingConfiguration"], current.get("loggingConfiguration")):
            differing.append("logging")
        if differing:
            plan.change(
                ", ".join(differing),
                lambda: sfn.update_state_machine(
                    stateMachineArn=arn,
                    definition=definition,
                    roleArn=desired["roleArn"],
                    loggingConfiguration=desired["loggingConfiguration"],
                ),
            )
        current_tags = {
            t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]
        }
        _plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: sfn.tag_resource(
                resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()]
            ),
            lambda keys: sfn.untag_resource(resourceArn=arn, tagKeys=keys),
        )
        return plan

    def delete(self, ctx: _Context) -> bool:
        if self._describe(ctx) is None:
            return False
        ctx.clients.stepfunctions.delete_state_machine(stateMachineArn=ctx.arns.state_machine)
        return True


class _Rule(_Resource):
    type = EVENT_RULE
    kind = "event rule"

    def plan(self, ctx: _Context) -> _Plan:
        events = ctx.clients.events
        pattern = spec.ingest_rule_event_pattern(ctx.names.bucket)
        target = {
            "Id": INGEST_TARGET_ID,
            "Arn": ctx.arns.ingest_queue,
            "SqsParameters": {"MessageGroupId": spec.INGEST_MESSAGE_GROUP},
        }
        put_rule = lambda: events.put_rule(  # noqa: E731
            Name=self.name,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=RULE_DESCRIPTION,
            Tags=[{"Key": key, "Value": value} for key, value in ctx.tags.items()],
        )
        put_target = lambda: events.put_targets(  # noqa: E731
            Rule=self.name,
            Targets=[target],  # type: ignore[list-item]
        )
        try:
            rule: Mapping[str, Any] | None = events.describe_rule(Name=self.name)
        except ClientError as exc:
            if not _absent(exc, "ResourceNotFoundException"):
                raise
            rule = None
        plan = _Plan(rule is not None)
        if rule is None:
            plan.change("rule", put_rule)
            plan.change("target", put_target)
            return plan
        if (
            _json_attribute(rule.get("EventPattern")) != pattern
            or rule.get("State") != "ENABLED"
            or rule.get("Description") != RULE_DESCRIPTION
        ):
            plan.change("pattern", put_rule)
        targets = events.list_targets_by_rule(Rule=self.name)["Targets"]
        ours = [t for t in targets if t["Id"] == INGEST_TARGET_ID]
        if len(ours) != 1 or not _contains(target, ours[0]):
            plan.change("target", put_target)
        extra = [t["Id"] for t in targets if t["Id"] != INGEST_TARGET_ID]
        if extra:
            plan.change("targets", lambda: events.remove_targets(Rule=self.name, Ids=extra))
        arn = ctx.arns.ingest_rule
        current_tags = {
            t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=arn)["Tags"]
        }
        _plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: events.tag_resource(
                ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            ),
            lambda keys: events.untag_resource(ResourceARN=arn, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: _Context) -> bool:
        events = ctx.clients.events
        try:
            targets = events.list_targets_by_rule(Rule=self.name)["Targets"]
        except ClientError as exc:
            if _absent(exc, "ResourceNotFoundException"):
                return False
            raise
        if targets:
            events.remove_targets(Rule=self.name, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=self.name)
        return True


class _EventSourceMapping(_Resource):
    """The ingest queue → ingest function mapping (stored in moto; `event_source` runs it)."""

    type = EVENT_SOURCE_MAPPING
    kind = "event source mapping"

    def _find(self, ctx: _Context) -> list[Mapping[str, Any]]:
        try:
            mappings = ctx.clients.lambda_.list_event_source_mappings(
                EventSourceArn=ctx.arns.ingest_queue,
                FunctionName=ctx.names.functions["ingest"],
            )["EventSourceMappings"]
        except ClientError as exc:
            if _absent(exc, "ResourceNotFoundException"):
                return []
            raise
        return [m for m in mappings if m.get("EventSourceArn") == ctx.arns.ingest_queue]

    def plan(self, ctx: _Context) -> _Plan:
        lambda_ = ctx.clients.lambda_
        settings: dict[str, Any] = {
            "BatchSize": spec.INGEST_BATCH_SIZE,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
        mappings = self._find(ctx)
        plan = _Plan(bool(mappings))
        if not mappings:
            plan.change(
                "mapping",
                lambda: lambda_.create_event_source_mapping(
                    EventSourceArn=ctx.arns.ingest_queue,
                    FunctionName=ctx.names.functions["ingest"],
                    Enabled=True,
                    Tags=ctx.tags,
                    **settings,
                ),
            )
            return plan
        first, *duplicates = mappings
        if not _contains(settings, first) or first.get("State") not in ("Enabled", "Enabling"):
            uuid = first["UUID"]
            plan.change(
                "settings",
                lambda: lambda_.update_event_source_mapping(UUID=uuid, Enabled=True, **settings),
            )
        for duplicate in duplicates:
            uuid = duplicate["UUID"]
            plan.change(
                "duplicate mapping",
                partial(lambda_.delete_event_source_mapping, UUID=uuid),
            )
        arn = first.get("EventSourceMappingArn")
        if arn:
            _plan_tags(
                plan,
                lambda_.list_tags(Resource=arn).get("Tags", {}),
                ctx.tags,
                lambda tags: lambda_.tag_resource(Resource=arn, Tags=tags),
                lambda keys: lambda_.untag_resource(Resource=arn, TagKeys=keys),
            )
        return plan

    def delete(self, ctx: _Context) -> bool:
        mappings = self._find(ctx)
        for mapping in mappings:
            ctx.clients.lambda_.delete_event_source_mapping(UUID=mapping["UUID"])
        return bool(mappings)


def _resources(ctx: _Context) -> list[_Resource]:
    """Every resource of the environment, in apply order (destroy runs it backwards)."""
    names = ctx.names
    log_groups = [
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
    ]
    resources: list[_Resource] = [_LogGroup(group) for group in log_groups]
    resources.append(_Queue(names.ingest_dlq, spec.dlq_attributes()))
    resources.extend(
        _Queue(names.stage_dlqs[stage], spec.dlq_attributes()) for stage in spec.STAGE_FUNCTIONS
    )
    resources.append(
        _Queue(
            names.ingest_queue,
            spec.ingest_queue_attributes(),
            dead_letter_queue=names.ingest_dlq,
            with_policy=True,
        )
    )
    resources.append(_Bucket(names.bucket))
    resources.append(_Table(names.status_table))
    resources.extend(
        _Role(
            names.function_roles[fn],
            trust=lambda _ctx: spec.lambda_assume_role_policy(),
            policy=lambda c, fn=fn: spec.function_policy(fn, c.arns),  # type: ignore[misc]
        )
        for fn in spec.FUNCTIONS
    )
    resources.append(
        _Role(
            names.state_machine_role,
            trust=lambda c: spec.state_machine_assume_role_policy(
                c.account_id, c.arns.state_machine
            ),
            policy=lambda c: spec.state_machine_policy(c.arns),
        )
    )
    resources.extend(_Function(names.functions[fn], fn) for fn in spec.FUNCTIONS)
    resources.append(_StateMachine(names.state_machine))
    resources.append(_Rule(names.ingest_rule))
    resources.append(_EventSourceMapping(f"{names.prefix}-ingest-source"))
    return resources


def planned_resources(
    config: PipelineConfig, *, account_id: str = DEFAULT_ACCOUNT_ID
) -> list[PlannedResource]:
    """What `apply_pipeline` manages, in order: for progress counting and previews."""
    return [PlannedResource(r.name, r.type) for r in _resources(_Context(config, None, account_id))]


# --- apply and destroy ----------------------------------------------------------------------


_DONE: Final[dict[str, str]] = {
    "create": "created",
    "update": "updated",
    "same": "unchanged",
    "delete": "deleted",
}
_DOING: Final[dict[str, str]] = {
    "create": "creating",
    "update": "updating",
    "same": "checked",
    "delete": "deleting",
}


def _event(
    event_type: EventType,
    resource: _Resource,
    step: ResourceStep,
    message: str,
    data: Mapping[str, Any] | None = None,
) -> EngineEvent:
    return EngineEvent(
        type=event_type,
        message=message,
        resource=resource.name,
        resource_type=resource.type,
        step=step,
        data=dict(data or {}),
    )


def _run_each(
    ctx: _Context,
    resources: list[_Resource],
    work: Callable[[_Resource], Iterator[EngineEvent]],
    on_event: EventSink,
    should_stop: StopCheck,
    operation: str,
) -> None:
    for index, resource in enumerate(resources):
        if should_stop():
            logger.info("emulator.apply.cancelled", operation=operation, done=index)
            raise OperationCancelledError(
                f"{operation} cancelled after {index} of {len(resources)} resources"
            )
        try:
            for event in work(resource):
                on_event(event)
        except (ClientError, BotoCoreError) as exc:
            detail = f"{resource.kind} {resource.name}: {exc}"
            on_event(_event(EventType.RESOURCE_FAILED, resource, "same", detail))
            logger.warning(
                "emulator.apply.resource_failed",
                operation=operation,
                resource=resource.name,
                error=str(exc),
            )
            raise EngineError(f"{operation} failed at {detail}") from exc
        except EngineError as exc:
            on_event(_event(EventType.RESOURCE_FAILED, resource, "same", exc.detail))
            raise


def apply_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    api_endpoint: str,
    on_event: EventSink = _noop_sink,
    should_stop: StopCheck = _never,
    retry: spec.RetryPolicy | None = None,
) -> dict[str, str]:
    """Create or update every resource of the environment; return its stack outputs.

    Emits RESOURCE_STARTED and RESOURCE_FINISHED per resource with step `create`, `update` or
    `same` (and `data["changes"]`, what differed); checks `should_stop` between resources and
    raises `OperationCancelledError` when it is set. Boto failures become `EngineError`.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = _Context(config, clients, account_id, retry)

    def apply_one(resource: _Resource) -> Iterator[EngineEvent]:
        plan = resource.plan(ctx)
        step = plan.step
        data = {"changes": list(plan.changes)}
        what = f" ({', '.join(plan.changes)})" if plan.changes else ""
        yield _event(
            EventType.RESOURCE_STARTED,
            resource,
            step,
            f"{_DOING[step]} {resource.kind} {resource.name}{what}",
            data,
        )
        for action in plan.actions:
            action()
        yield _event(
            EventType.RESOURCE_FINISHED,
            resource,
            step,
            f"{_DONE[step]} {resource.kind} {resource.name}{what}",
            data,
        )

    _run_each(ctx, _resources(ctx), apply_one, on_event, should_stop, "apply")
    try:
        outputs = _outputs(ctx, api_endpoint)
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"apply could not read the stack outputs: {exc}") from exc
    logger.info("emulator.apply.done", environment=config.stack_name)
    return outputs


def _outputs(ctx: _Context, api_endpoint: str) -> dict[str, str]:
    names = ctx.names
    outputs = {
        "bucketName": names.bucket,
        "ingestQueueUrl": ctx.queue_url(names.ingest_queue),
        "ingestDlqUrl": ctx.queue_url(names.ingest_dlq),
        "validatorDlqUrl": ctx.queue_url(names.stage_dlqs["validator"]),
        "processorDlqUrl": ctx.queue_url(names.stage_dlqs["processor"]),
        "aggregatorDlqUrl": ctx.queue_url(names.stage_dlqs["aggregator"]),
        "statusTableName": names.status_table,
        "stateMachineArn": ctx.arns.state_machine,
        "validatorFunctionName": names.functions["validator"],
        "processorFunctionName": names.functions["processor"],
        "aggregatorFunctionName": names.functions["aggregator"],
        "ingestFunctionName": names.functions["ingest"],
        "statusFunctionName": names.functions["status"],
        "apiEndpoint": api_endpoint,
    }
    return {key: outputs[key] for key in spec.STACK_OUTPUTS}


def plan_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    on_event: EventSink = _noop_sink,
    should_stop: StopCheck = _never,
    retry: spec.RetryPolicy | None = None,
) -> dict[str, int]:
    """What `apply_pipeline` would do, resource by resource, without writing anything.

    The local engine's preview (the plan of an update) and refresh (drift: resources that are
    missing or differ from the spec). Returns the count of resources by step.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = _Context(config, clients, account_id, retry)
    counts: dict[str, int] = {}

    def plan_one(resource: _Resource) -> Iterator[EngineEvent]:
        try:
            plan = resource.plan(ctx)
            step, changes = plan.step, list(plan.changes)
        except ClientError as exc:
            # Planning reads what the resource refers to; missing dependencies mean that the
            # environment is (partly) gone, so this resource would be created too.
            if not _absent(exc, *_MISSING_CODES):
                raise
            step, changes = "create", []
        counts[step] = counts.get(step, 0) + 1
        what = f" ({', '.join(changes)})" if changes else ""
        yield _event(
            EventType.RESOURCE_FINISHED,
            resource,
            step,
            f"{resource.kind} {resource.name}: {_PLANNED[step]}{what}",
            {"changes": changes},
        )

    _run_each(ctx, _resources(ctx), plan_one, on_event, should_stop, "plan")
    return counts


_PLANNED: Final[dict[str, str]] = {
    "create": "would be created",
    "update": "would be updated",
    "same": "up to date",
    "delete": "would be deleted",
}
# Error codes meaning "does not exist" across the services the plan reads.
_MISSING_CODES: Final = (
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NoSuchBucket",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "StateMachineDoesNotExist",
    "404",
)


def destroy_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    on_event: EventSink = _noop_sink,
    should_stop: StopCheck = _never,
) -> None:
    """Delete every resource of the environment, the versioned bucket's contents included.

    A resource that is already gone is reported with step `same`; destroying an environment
    that does not exist succeeds.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = _Context(config, clients, account_id)

    def destroy_one(resource: _Resource) -> Iterator[EngineEvent]:
        yield _event(
            EventType.RESOURCE_STARTED,
            resource,
            "delete",
            f"deleting {resource.kind} {resource.name}",
        )
        existed = resource.delete(ctx)
        step: ResourceStep = "delete" if existed else "same"
        message = (
            f"deleted {resource.kind} {resource.name}"
            if existed
            else f"{resource.kind} {resource.name} was already absent"
        )
        yield _event(EventType.RESOURCE_FINISHED, resource, step, message)

    _run_each(ctx, list(reversed(_resources(ctx))), destroy_one, on_event, should_stop, "destroy")
    logger.info("emulator.destroy.done", environment=config.stack_name)
