"""An environment's data plane seen from the service: file statuses, retries and DLQs.

The same code serves both engines: the host hands out a boto3 session (the emulator's for the
local engine, the configured AWS identity for the pulumi engine) and the environment's stack
outputs say where everything is. Status reads and writes reuse the handlers' `StatusStore`, so
the service follows exactly the status rules of the pipeline.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote_plus

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from handlers.core.ids import execution_name, file_id, is_file_id
from handlers.core.status_model import CANARY_ATTRIBUTE, PUBLIC_ITEM_FIELDS, FileStatus
from handlers.core.status_store import RetryNotAllowedError, StatusStore
from provisioner.engines.base import DataPlane
from provisioner.errors import ConflictError, InvalidRequestError, NotFoundError, UnavailableError
from provisioner.files.stats import FileStats, file_stats
from stacks.spec import INGEST_MESSAGE_GROUP

log = structlog.get_logger(__name__)

# The listing scans the table; beyond this many items use ?key= or the status API.
SCAN_LIMIT: Final = 10_000
PEEK_LIMIT: Final = 10
REDRIVE_LIMIT: Final = 1_000
DLQ_OUTPUTS: Final = {
    "ingest": "ingestDlqUrl",
    "validator": "validatorDlqUrl",
    "processor": "processorDlqUrl",
    "aggregator": "aggregatorDlqUrl",
}


@dataclass(frozen=True)
class FilePage:
    items: list[dict[str, Any]]
    counts: dict[str, int]
    total: int
    truncated: bool


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    file_id: str | None
    object_key: str | None
    stage: str
    reason: str
    sent_at: str | None
    receive_count: int


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    depth: int
    messages: list[DeadLetter] = field(default_factory=list)


class EnvironmentDataPlane:
    def __init__(self, access: DataPlane, outputs: Mapping[str, str], status_ttl_days: int) -> None:
        if not outputs.get("statusTableName"):
            raise ConflictError("the environment has no data plane (it is not provisioned)")
        self._access = access
        self._outputs = outputs
        self._ttl_days = status_ttl_days
        self._store = StatusStore(outputs["statusTableName"], client=access.client("dynamodb"))

    # --- files ---

    def files(
        self,
        *,
        status: FileStatus | None,
        key: str | None,
        limit: int,
        offset: int,
        canary: bool = False,
    ) -> FilePage:
        """Newest first; counts by status over everything the filter matches (without `status`).

        Canary files (verified rollouts) are left out, counts included; `canary=True` lists
        only them instead.
        """
        with _aws_errors():
            if key is not None:
                matched, truncated = self._store.by_object_key(key), False
            else:
                matched, truncated = self._store.scan_items(max_items=SCAN_LIMIT)
        matched = [
            item for item in _status_items(matched) if bool(item.get(CANARY_ATTRIBUTE)) is canary
        ]
        matched.sort(key=lambda item: str(item.get("receivedAt", "")), reverse=True)
        counts = Counter(str(item.get("status")) for item in matched)
        if status is not None:
            matched = [item for item in matched if item.get("status") == status]
        page = [_listing(item) for item in matched[offset : offset + limit]]
        return FilePage(page, dict(counts), len(matched), truncated)

    def stats(self, now: datetime, minutes: int) -> tuple[FileStats, bool]:
        """Throughput and latency of the last `minutes` (canary files left out, as in the
        listing), and whether the table held more items than one scan reads."""
        with _aws_errors():
            items, truncated = self._store.scan_items(max_items=SCAN_LIMIT)
        real = (item for item in _status_items(items) if not item.get(CANARY_ATTRIBUTE))
        return file_stats(real, now, minutes), truncated

    def file(self, file_id_: str) -> dict[str, Any]:
        if not is_file_id(file_id_):
            raise InvalidRequestError("a file id is 64 lowercase hexadecimal characters")
        with _aws_errors():
            item = self._store.get(file_id_)
        if item is None:
            raise NotFoundError(f"file {file_id_} not found (unknown or expired)")
        if not _is_status_item(item):
            raise NotFoundError(f"file {file_id_} not found (its item is not a status item)")
        return _public(item)

    def status_item(self, file_id_: str) -> dict[str, Any] | None:
        """A file's public status item, or None while the pipeline has not recorded it."""
        with _aws_errors():
            item = self._store.get(file_id_)
        return None if item is None or not _is_status_item(item) else _public(item)

    def upload(self, key: str, body: bytes) -> str:
        """Put an object in the environment's bucket, as any client would; returns its file id
        once the object survives a crash of the service (`DataPlane.durable`)."""
        bucket = self._outputs["bucketName"]
        with _aws_errors():
            version = self._access.client("s3").put_object(Bucket=bucket, Key=key, Body=body)[
                "VersionId"
            ]
        self._durable()
        return file_id(bucket, key, version)

    def retry(self, file_id_: str) -> dict[str, Any]:
        """A new attempt of a FAILED file: RECEIVED again, then an execution of its own."""
        item = self.file(file_id_)
        with _aws_errors():
            try:
                attempt = self._store.begin_retry(file_id_, ttl_days=self._ttl_days)
            except RetryNotAllowedError as error:
                raise ConflictError(
                    f"only a FAILED file can be retried; file {file_id_} is "
                    f"{error.status or 'gone'}"
                ) from None
            name = execution_name(file_id_, attempt)
            execution_input = {
                "fileId": file_id_,
                "bucket": item["bucket"],
                "objectKey": item["objectKey"],
                "versionId": item["versionId"],
                "attempt": attempt,
            }
            try:
                self._access.client("stepfunctions").start_execution(
                    stateMachineArn=self._outputs["stateMachineArn"],
                    name=name,
                    input=json.dumps(execution_input),
                )
            except (ClientError, BotoCoreError) as error:
                # Do not leave the file claiming RECEIVED with nothing running.
                self._store.fail(
                    file_id_,
                    stage="ingest",
                    error_type="RetryNotStarted",
                    message=f"the retry could not start its execution ({type(error).__name__})",
                )
                raise
        self._durable()
        log.info("dataplane.file_retried", file_id=file_id_, attempt=attempt)
        return self.file(file_id_)

    # --- dead-letter queues ---

    def dead_letters(self, peek: int = PEEK_LIMIT) -> list[DeadLetterQueue]:
        sqs = self._access.client("sqs")
        queues = []
        with _aws_errors():
            for name, output in DLQ_OUTPUTS.items():
                url = self._outputs[output]
                attributes = sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                depth = int(attributes.get("ApproximateNumberOfMessages", "0"))
                messages = self._peek(sqs, url, name, peek) if depth else []
                queues.append(DeadLetterQueue(name, depth, messages))
        return queues

    def _peek(self, sqs: Any, url: str, queue: str, limit: int) -> list[DeadLetter]:
        # A zero visibility timeout leaves the messages where they are; a DLQ has no redrive
        # of its own, so the extra receive count is harmless. FIFO queues hand out their
        # oldest messages first: this is a peek at the head of the queue (shown newest first).
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(limit, 10),
            VisibilityTimeout=0,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
        )
        raw = self._access.raw_event_keys
        messages = response.get("Messages", [])
        letters = [_dead_letter(queue, message, raw) for message in messages]
        return sorted(letters, key=lambda letter: letter.sent_at or "", reverse=True)

    def redrive_ingest(self, limit: int = REDRIVE_LIMIT) -> int:
        """Move ingest-DLQ messages back to the ingest queue; returns how many moved.

        Send first, delete after: a crash in between duplicates a message, which ingest
        absorbs (one execution per file), rather than losing one.
        """
        sqs = self._access.client("sqs")
        source, target = self._outputs["ingestDlqUrl"], self._outputs["ingestQueueUrl"]
        moved = 0
        with _aws_errors():
            while moved < limit:
                messages = sqs.receive_message(
                    QueueUrl=source,
                    MaxNumberOfMessages=min(10, limit - moved),
                    VisibilityTimeout=60,
                    WaitTimeSeconds=0,
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    sqs.send_message(
                        QueueUrl=target,
                        MessageBody=message["Body"],
                        MessageGroupId=INGEST_MESSAGE_GROUP,
                        # A fresh id: content-based deduplication would drop a redrive of a
                        # message first sent less than five minutes ago.
                        MessageDeduplicationId=f"redrive-{uuid.uuid4().hex}",
                    )
                    sqs.delete_message(QueueUrl=source, ReceiptHandle=message["ReceiptHandle"])
                    moved += 1
        if moved:
            self._durable()
        log.info("dataplane.ingest_dlq_redriven", moved=moved)
        return moved

    def _durable(self) -> None:
        # Raises UnavailableError if it cannot: done, but not acknowledged (a retry is harmless).
        self._access.durable()


_IDENTITY_FIELDS: Final = ("bucket", "objectKey", "versionId")
_STATUSES: Final = frozenset(FileStatus)


def _is_status_item(item: Mapping[str, Any]) -> bool:
    """Whether the item is a file's status item (as the pipeline and this service write them):
    the table is the environment's, and anything else put in it must not break a listing."""
    identifier = item.get("fileId")
    return (
        isinstance(identifier, str)
        and is_file_id(identifier)
        and item.get("status") in _STATUSES
        and all(isinstance(item.get(name), str) for name in _IDENTITY_FIELDS)
    )


def _status_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = [item for item in items if _is_status_item(item)]
    if len(kept) < len(items):
        log.warning("files.foreign_items_skipped", items=len(items) - len(kept))
    return kept


def _public(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in PUBLIC_ITEM_FIELDS if name in item}


def _listing(item: Mapping[str, Any]) -> dict[str, Any]:
    """A file in a list: everything but the (possibly large) per-symbol map."""
    return {name: value for name, value in _public(item).items() if name != "symbols"}


def _dead_letter(queue: str, message: Mapping[str, Any], raw_keys: bool) -> DeadLetter:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    receive_count = int(attributes.get("ApproximateReceiveCount", "0"))
    try:
        body = json.loads(message["Body"])
    except (ValueError, TypeError):
        body = None
    if not isinstance(body, dict):
        return DeadLetter(message["MessageId"], None, None, queue, "unreadable message", sent, 0)
    if queue == "ingest":
        # The original S3 event (via EventBridge) that ingest failed to take in three times.
        detail = _mapping(body.get("detail"))
        bucket = _mapping(detail.get("bucket")).get("name")
        obj = _mapping(detail.get("object"))
        key, version = obj.get("key"), obj.get("version-id")
        if isinstance(key, str) and not raw_keys:
            key = unquote_plus(key)  # as ingest decodes it (AWS URL-encodes event keys)
        identifier = None
        if isinstance(bucket, str) and isinstance(key, str) and isinstance(version, str):
            identifier = file_id(bucket, key, version)
        return DeadLetter(
            message["MessageId"],
            identifier,
            key if isinstance(key, str) else None,
            "ingest",
            "ingest could not take the upload in after 3 attempts",
            sent,
            receive_count,
        )
    error = _mapping(body.get("error"))
    reason = ": ".join(str(part) for part in (error.get("type"), error.get("message")) if part)
    return DeadLetter(
        message["MessageId"],
        body.get("fileId"),
        body.get("objectKey"),
        str(body.get("stage") or queue),
        reason or "no reason recorded",
        sent,
        receive_count,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@contextmanager
def _aws_errors() -> Iterator[None]:
    """AWS failures reaching the data plane are a 503 with the error code, never a traceback."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "unknown")
        raise UnavailableError(f"the environment's AWS resources answered {code}") from None
    except BotoCoreError as error:
        raise UnavailableError(
            f"the environment's AWS resources are unreachable ({type(error).__name__})"
        ) from None
