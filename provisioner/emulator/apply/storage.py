"""Renderers of the model's storage: log groups, queues, the bucket, the status table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from provisioner.emulator.apply.plan import (
    Context,
    Plan,
    Resource,
    absent,
    contains,
    json_attribute,
    plan_tags,
)
from provisioner.errors import EngineError
from stacks import spec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TagTypeDef as DynamoDBTagTypeDef
    from mypy_boto3_s3.type_defs import (
        ObjectIdentifierTypeDef,
        PublicAccessBlockConfigurationTypeDef,
        ServerSideEncryptionRuleTypeDef,
    )
    from mypy_boto3_s3.type_defs import TagTypeDef as S3TagTypeDef
    from mypy_boto3_sqs.literals import QueueAttributeNameType


class LogGroup(Resource):
    kind = "log group"

    def _arn(self, ctx: Context) -> str:
        return ctx.arns.log_groups[self.name]

    def _find(self, ctx: Context) -> Mapping[str, Any] | None:
        groups = ctx.clients.logs.describe_log_groups(logGroupNamePrefix=self.name)["logGroups"]
        return next((g for g in groups if g.get("logGroupName") == self.name), None)

    def plan(self, ctx: Context) -> Plan:
        logs = ctx.clients.logs
        retention = ctx.config.log_retention_days
        group = self._find(ctx)
        plan = Plan(group is not None)
        if group is None:
            plan.change(
                "log group", lambda: logs.create_log_group(logGroupName=self.name, tags=ctx.tags)
            )
        if group is None or group.get("retentionInDays") != retention:
            plan.change(
                "retentionInDays",
                lambda: logs.put_retention_policy(
                    logGroupName=self.name, retentionInDays=retention
                ),
            )
        if group is not None:
            arn = self._arn(ctx)
            current = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
            plan_tags(
                plan,
                current,
                ctx.tags,
                lambda tags: logs.tag_resource(resourceArn=arn, tags=tags),
                lambda keys: logs.untag_resource(resourceArn=arn, tagKeys=keys),
            )
        return plan

    def delete(self, ctx: Context) -> bool:
        try:
            ctx.clients.logs.delete_log_group(logGroupName=self.name)
        except ClientError as exc:
            if absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


def queue_attributes(
    settings: spec.QueueSettings, arns: spec.PipelineArns
) -> dict[QueueAttributeNameType, str]:
    """Every SQS attribute of a queue of the model, in SQS's spelling."""

    def flag(value: bool) -> str:
        return "true" if value else "false"

    attributes: dict[QueueAttributeNameType, str] = {
        "FifoQueue": flag(settings.fifo),
        "ContentBasedDeduplication": flag(settings.content_based_deduplication),
        "DeduplicationScope": settings.deduplication_scope,
        "FifoThroughputLimit": settings.throughput_limit,
        "VisibilityTimeout": str(settings.visibility_timeout_s),
        "MessageRetentionPeriod": str(settings.retention_s),
        "MaximumMessageSize": str(settings.max_message_bytes),
        "DelaySeconds": str(settings.delivery_delay_s),
        "ReceiveMessageWaitTimeSeconds": str(settings.receive_wait_s),
        "SqsManagedSseEnabled": flag(settings.managed_encryption),
    }
    if settings.dead_letter_queue is not None:
        dlq_arn = arns.queues[settings.dead_letter_queue]
        attributes["RedrivePolicy"] = json.dumps(spec.redrive_policy(dlq_arn))
    if settings.accepts_ingest_rule:
        attributes["Policy"] = json.dumps(spec.ingest_queue_policy(arns))
    return attributes


class Queue(Resource):
    kind = "queue"

    def __init__(self, name: str, type: str, settings: spec.QueueSettings) -> None:
        super().__init__(name, type)
        self.settings = settings

    def _desired(self, ctx: Context) -> dict[QueueAttributeNameType, str]:
        return queue_attributes(self.settings, ctx.arns)

    def _url(self, ctx: Context) -> str | None:
        try:
            return ctx.clients.sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
        except ClientError as exc:
            if absent(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return None
            raise

    def plan(self, ctx: Context) -> Plan:
        sqs = ctx.clients.sqs
        desired = self._desired(ctx)
        url = self._url(ctx)
        plan = Plan(url is not None)
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
                sorted(differing),
                lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes=settable),
            )
        plan_tags(
            plan,
            sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
            ctx.tags,
            lambda tags: sqs.tag_queue(QueueUrl=url, Tags=tags),
            lambda keys: sqs.untag_queue(QueueUrl=url, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        url = self._url(ctx)
        if url is None:
            return False
        ctx.clients.sqs.delete_queue(QueueUrl=url)
        return True


def _same_queue_attribute(name: QueueAttributeNameType, current: str | None, desired: str) -> bool:
    if name in ("RedrivePolicy", "Policy", "RedriveAllowPolicy"):
        # JSON attributes: compared as documents (services reorder keys, stringify numbers).
        def normal(value: str | None) -> Any:
            return json.loads(json.dumps(json_attribute(value)), parse_int=str)

        return bool(normal(current) == normal(desired))
    return current == desired


class Bucket(Resource):
    kind = "bucket"

    def _exists(self, ctx: Context) -> bool:
        try:
            ctx.clients.s3.head_bucket(Bucket=self.name)
        except ClientError as exc:
            if absent(exc, "404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    def _read(self, ctx: Context, call: Callable[[], Any], *missing: str) -> Any:
        try:
            return call()
        except ClientError as exc:
            if absent(exc, *missing):
                return None
            raise

    def plan(self, ctx: Context) -> Plan:
        s3 = ctx.clients.s3
        bucket = self.name
        exists = self._exists(ctx)
        plan = Plan(exists)
        if not exists:
            create: dict[str, Any] = {"Bucket": bucket}
            if ctx.config.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": ctx.config.region}
            plan.change("bucket", lambda: s3.create_bucket(**create))

        def read(call: Callable[[], Any], *missing: str) -> Any:
            return self._read(ctx, call, *missing) if exists else None

        # S3 rejects concurrent configuration changes of one bucket, and the noncurrent-version
        # rules need versioning first: the same order as stacks.pipeline. No bucket policy
        # (see the module docstring).
        settings = spec.BUCKET
        block: PublicAccessBlockConfigurationTypeDef = {
            "BlockPublicAcls": settings.block_public_acls,
            "IgnorePublicAcls": settings.ignore_public_acls,
            "BlockPublicPolicy": settings.block_public_policy,
            "RestrictPublicBuckets": settings.restrict_public_buckets,
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
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": settings.encryption}}
        ]
        current_sse = read(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
                "Rules"
            ],
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        if not contains(sse, current_sse):
            plan.change(
                "encryption",
                lambda: s3.put_bucket_encryption(
                    Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": sse}
                ),
            )

        versioning = read(lambda: s3.get_bucket_versioning(Bucket=bucket).get("Status"))
        status = spec.versioning_status(settings)
        if versioning != status:
            plan.change(
                "versioning",
                lambda: s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": status}
                ),
            )

        rules = [lifecycle_rule(rule) for rule in spec.lifecycle_rules(ctx.config)]
        current_rules = read(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
            "NoSuchLifecycleConfiguration",
        )
        if not contains(rules, current_rules):
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

    def delete(self, ctx: Context) -> bool:
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


class Table(Resource):
    kind = "table"

    def plan(self, ctx: Context) -> Plan:
        dynamodb = ctx.clients.dynamodb
        settings = spec.STATUS_TABLE
        schema = table_create_args(settings)
        arn = ctx.arns.status_table
        try:
            table: Mapping[str, Any] | None = dynamodb.describe_table(TableName=self.name)["Table"]
        except ClientError as exc:
            if not absent(exc, "ResourceNotFoundException"):
                raise
            table = None
        plan = Plan(table is not None)
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
                        TableName=self.name, SSESpecification={"Enabled": settings.encrypted}
                    ),
                )
        ttl = (
            dynamodb.describe_time_to_live(TableName=self.name)["TimeToLiveDescription"]
            if table is not None
            else {}
        )
        if (ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")) != settings.ttl_enabled or (
            ttl.get("AttributeName") != settings.ttl_attribute
        ):
            plan.change(
                "ttl",
                lambda: dynamodb.update_time_to_live(
                    TableName=self.name,
                    TimeToLiveSpecification={
                        "Enabled": settings.ttl_enabled,
                        "AttributeName": settings.ttl_attribute,
                    },
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
        if (pitr == "ENABLED") != settings.point_in_time_recovery:
            plan.change(
                "point-in-time recovery",
                lambda: dynamodb.update_continuous_backups(
                    TableName=self.name,
                    PointInTimeRecoverySpecification={
                        "PointInTimeRecoveryEnabled": settings.point_in_time_recovery
                    },
                ),
            )
        if table is not None:
            current = {
                t["Key"]: t["Value"]
                for t in dynamodb.list_tags_of_resource(ResourceArn=arn).get("Tags", [])
            }
            plan_tags(
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

    def delete(self, ctx: Context) -> bool:
        try:
            ctx.clients.dynamodb.delete_table(TableName=self.name)
        except ClientError as exc:
            if absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


def lifecycle_rule(rule: spec.LifecycleRule) -> dict[str, Any]:
    """One model lifecycle rule in S3's spelling (PutBucketLifecycleConfiguration)."""
    rendered: dict[str, Any] = {
        "ID": rule.id,
        "Status": spec.lifecycle_status(rule),
        "Filter": {"Prefix": rule.prefix},
    }
    storage = spec.ARCHIVE_STORAGE_CLASS
    if rule.archive_after_days is not None:
        rendered["Transitions"] = [{"Days": rule.archive_after_days, "StorageClass": storage}]
    if rule.archive_noncurrent_after_days is not None:
        rendered["NoncurrentVersionTransitions"] = [
            {"NoncurrentDays": rule.archive_noncurrent_after_days, "StorageClass": storage}
        ]
    if rule.expire_after_days is not None:
        rendered["Expiration"] = {"Days": rule.expire_after_days}
    if rule.expire_noncurrent_after_days is not None:
        rendered["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule.expire_noncurrent_after_days
        }
    if rule.abort_multipart_after_days is not None:
        rendered["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": rule.abort_multipart_after_days
        }
    return rendered


def table_create_args(settings: spec.TableSettings) -> dict[str, Any]:
    """DynamoDB CreateTable arguments of the model's table, except its name and tags."""
    return {
        "BillingMode": spec.billing_mode(settings),
        "KeySchema": [{"AttributeName": settings.partition_key, "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": spec.KEY_TYPE_CODES[kind]}
            for name, kind in settings.key_types.items()
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": name, "KeyType": role}
                    for name, role in spec.index_keys(index)
                ],
                "Projection": {"ProjectionType": index.projection},
            }
            for index in settings.indexes
        ],
        "SSESpecification": {"Enabled": settings.encrypted},
    }
