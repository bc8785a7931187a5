"""Ingest: one Step Functions execution per uploaded object version.

Consumes the ingest FIFO queue; each message body is an EventBridge "Object Created" event from
S3. Per record: fileId = sha256hex(bucket/key#versionId), the status item is created as
RECEIVED (already there is fine) and `StartExecution(name=fileId)` carries S3 references only.
`ExecutionAlreadyExists` means this version was started before: success (idempotent).

Partial batch failures use Powertools' SqsFifoPartialProcessor: the first failing record and
every record after it are reported in `batchItemFailures` (FIFO order must hold, so later
records are not processed ahead of it); they are received again, the records after it then
succeed, and a record that keeps failing reaches the ingest DLQ after 3 receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from handlers.core import runtime
from handlers.core.errors import MalformedEventError
from handlers.core.ids import execution_name, file_id
from handlers.core.status_model import is_canary_key
from handlers.core.status_store import DEFAULT_TTL_DAYS, StatusStore

logger = Logger()


@dataclass(frozen=True)
class Upload:
    """An uploaded object version, the key decoded."""

    bucket: str
    object_key: str
    version_id: str

    @property
    def file_id(self) -> str:
        return file_id(self.bucket, self.object_key, self.version_id)


def parse_upload(body: str) -> Upload:
    """The upload an S3-via-EventBridge event describes.

    AWS URL-encodes the key in these events (a space arrives as `+`, non-ASCII as %XX of its
    UTF-8 bytes); Powertools' data class decodes it with `unquote_plus`.
    """
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise MalformedEventError("message body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedEventError("message body is not a JSON object")
    event = S3EventBridgeNotificationEvent(data)
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise MalformedEventError("message is not an S3 Object Created event")
    try:
        upload = Upload(
            bucket=event.detail.bucket.name,
            object_key=event.detail.object.key,
            version_id=event.detail.object.version_id,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedEventError(f"S3 event lacks a field: {exc}") from None
    if not (upload.bucket and upload.object_key and upload.version_id):
        raise MalformedEventError("S3 event has an empty bucket, key or version-id")
    return upload


def start_pipeline(upload: Upload) -> None:
    """Record the file as RECEIVED and start its execution; both steps are idempotent."""
    fid = upload.file_id
    store = StatusStore.from_env()
    ttl_days = runtime.env_int("STATUS_TTL_DAYS", DEFAULT_TTL_DAYS, low=1)
    created = store.record_received(
        fid,
        bucket=upload.bucket,
        object_key=upload.object_key,
        version_id=upload.version_id,
        ttl_days=ttl_days,
        canary=is_canary_key(upload.object_key),
    )
    sfn = runtime.stepfunctions()
    payload = {
        "fileId": fid,
        "bucket": upload.bucket,
        "objectKey": upload.object_key,
        "versionId": upload.version_id,
        "attempt": 1,
    }
    try:
        response = sfn.start_execution(
            stateMachineArn=runtime.require_env("STATE_MACHINE_ARN"),
            name=execution_name(fid),
            input=json.dumps(payload, sort_keys=True),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        logger.info("execution.already_exists", extra={"statusCreated": created})
        return
    logger.info(
        "execution.started",
        extra={"executionArn": response["executionArn"], "statusCreated": created},
    )


def record_handler(record: SQSRecord) -> str:
    # The correlation id is the record's fileId; clear the previous record's before parsing so
    # that a malformed record is not logged under someone else's id.
    logger.set_correlation_id(None)
    logger.remove_keys(["objectKey", "versionId"])
    try:
        upload = parse_upload(record.body)
    except MalformedEventError as exc:
        logger.error("record.malformed", extra={"messageId": record.message_id, "reason": str(exc)})
        raise
    logger.set_correlation_id(upload.file_id)
    logger.append_keys(objectKey=upload.object_key, versionId=upload.version_id)
    if upload.object_key.endswith("/"):
        # A "folder" (the console's zero-byte marker), not a file: nothing to process.
        logger.info("record.folder_marker_ignored")
        return upload.file_id
    try:
        start_pipeline(upload)
    except (ClientError, BotoCoreError) as exc:
        # transient: the record goes back to the queue and is retried
        logger.warning("record.retry", extra={"messageId": record.message_id, "reason": str(exc)})
        raise
    return upload.file_id


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    runtime.bind_invocation(logger)
    # A processor per invocation: it holds the batch's state, which must not outlive it.
    processor = SqsFifoPartialProcessor()
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
