"""The SQS → Lambda event source mapping, emulated; and the emulator's event adaptations.

moto stores the ingest queue's mapping but moves nothing (its own delivery is switched off by
`lambda_dispatch`). `poll_once` does what the Lambda service's poller does: receive up to ten
messages, invoke the function once with the Lambda SQS event, delete what succeeded, leave
the `batchItemFailures` (or the whole batch, if the invocation failed) to come back after the
visibility timeout and reach the DLQ through the queue's redrive policy. `IngestPoller` runs it
in a thread, one per local environment.

`aws_shaped_record` is the one place where an event is adapted from what moto produces to what
AWS produces, so the handlers can follow AWS alone. Messages at rest in the emulator's queues
(e.g. the ingest DLQ) keep moto's shape, raw keys included; the service's DLQ peek knows that
through `DataPlaneAccess.raw_event_keys`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.emulator.lambda_dispatch import InvocationResult, LambdaDispatcher

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = structlog.get_logger(__name__)

# The one event id moto 5.2 gives every S3 → EventBridge event (moto.events.utils).
MOTO_S3_EVENT_ID: Final = "17793124-05d4-b198-2fde-7ededc63b103"
_EVENT_ID_NAMESPACE: Final = uuid.UUID("5f1d1d5e-6a53-4c1b-9b0e-0c7f3f4e2a10")
MAX_BATCH: Final = 10

EventInvoker = Callable[[dict[str, Any]], InvocationResult]


# --- emulator adaptations -------------------------------------------------------------------


def aws_shaped_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """One SQS message as a record of AWS Lambda's SQS event, with moto's deviations fixed.

    The adaptations (moto 5.2.5 → AWS), all here:
    - S3 → EventBridge events: AWS URL-encodes `detail.object.key` (a space becomes `+`, `+`
      becomes `%2B`, non-ASCII is percent-encoded UTF-8; Powertools decodes with
      `unquote_plus`); moto puts the raw key. The key is encoded with `quote_plus` (keeping
      `/`), which `unquote_plus` reverses exactly.
    - moto spells the object's ETag field `eTag`; AWS (and Powertools' models) say `etag`.
    - moto gives every S3 event the same `id`; AWS ids are unique. It is replaced by an id
      derived from the message id (stable across redeliveries of the same message).
    - FIFO messages: AWS always sets `SequenceNumber`; moto only when the sender gave a
      deduplication id (never for content-based deduplication, i.e. never from EventBridge).
      A unique 20-digit number is synthesised from the send time and the message id; handlers
      must not compare it across messages (it is not monotonic here).
    `md5OfBody` is the MD5 of the adapted body, as it would be for the body AWS delivers.
    Not adapted (no handler relies on them): `detail.reason` is `ObjectCreated` rather than the
    API name (`PutObject`, `CompleteMultipartUpload`), and `detail.sequencer` is a constant.
    """
    body = aws_shaped_body(message["Body"], message["MessageId"])
    attributes: dict[str, str] = {str(k): v for k, v in message.get("Attributes", {}).items()}
    if queue_arn.endswith(".fifo") and "SequenceNumber" not in attributes:
        sent_ms = int(attributes.get("SentTimestamp", "0"))
        salt = int(hashlib.sha256(message["MessageId"].encode()).hexdigest(), 16) % 10**7
        attributes["SequenceNumber"] = f"{sent_ms * 10**7 + salt:020d}"
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def aws_shaped_body(body: str, message_id: str) -> str:
    """The message body AWS would deliver: only S3 EventBridge events change (see above)."""
    try:
        event = json.loads(body)
    except json.JSONDecodeError:
        return body
    if not (isinstance(event, dict) and event.get("source") == "aws.s3"):
        return body
    detail = event.get("detail")
    obj = detail.get("object") if isinstance(detail, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return body
    obj["key"] = quote_plus(obj["key"], safe="/")
    if "eTag" in obj and "etag" not in obj:
        obj["etag"] = obj.pop("eTag")
    if event.get("id") == MOTO_S3_EVENT_ID:
        event["id"] = str(uuid.uuid5(_EVENT_ID_NAMESPACE, message_id))
    # EventBridge delivers compact JSON; moto's json.dumps uses spaces. Either parses the same.
    return json.dumps(event, separators=(",", ":"))


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API spelling (StringValue, BinaryValue bytes) → Lambda event spelling."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": b64(value["BinaryValue"]) if "BinaryValue" in value else None,
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(item) for item in value.get("BinaryListValues", [])],
        "dataType": value.get("DataType", "String"),
    }


# --- one poll -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollStats:
    """What one poll did."""

    received: int = 0
    deleted: int = 0
    # Messages left in the queue: reported in batchItemFailures, or the whole batch when the
    # invocation failed. They come back after the visibility timeout.
    failed: int = 0
    invocation_error: str | None = None


def poll_once(
    sqs_client: SQSClient,
    queue_url: str,
    queue_arn: str,
    invoke: EventInvoker,
    *,
    wait_time_s: int = 0,
    max_messages: int = MAX_BATCH,
) -> PollStats:
    """Receive one batch, invoke the function with it, delete the records that succeeded."""
    response = sqs_client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(max_messages, MAX_BATCH)),
        WaitTimeSeconds=wait_time_s,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages = response.get("Messages", [])
    if not messages:
        return PollStats()
    records = [aws_shaped_record(message, queue_arn) for message in messages]
    result = invoke({"Records": records})
    if not result.ok:
        # Lambda deletes nothing when the invocation itself fails.
        logger.warning(
            "emulator.event_source.invocation_failed",
            queue=queue_arn,
            records=len(records),
            error_type=result.error_type,
            error=result.error_message,
        )
        return PollStats(
            received=len(records), failed=len(records), invocation_error=result.error_type
        )
    failed_ids = _batch_item_failures(result, {record["messageId"] for record in records})
    if failed_ids is None:
        logger.warning("emulator.event_source.invalid_response", queue=queue_arn)
        return PollStats(
            received=len(records), failed=len(records), invocation_error="InvalidBatchResponse"
        )
    succeeded = [record for record in records if record["messageId"] not in failed_ids]
    deleted = _delete(sqs_client, queue_url, succeeded)
    stats = PollStats(received=len(records), deleted=deleted, failed=len(failed_ids))
    logger.info(
        "emulator.event_source.batch",
        queue=queue_arn,
        received=stats.received,
        deleted=stats.deleted,
        failed=stats.failed,
    )
    return stats


def _batch_item_failures(result: InvocationResult, batch_ids: set[str]) -> set[str] | None:
    """The ids the function reported as failed; None if the response is not valid.

    As Lambda does with ReportBatchItemFailures: an empty or null response, or one without
    `batchItemFailures`, means every record succeeded; a malformed list or an id outside the
    batch fails the whole batch.
    """
    try:
        value = result.value()
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("batchItemFailures") is None:
        return set()
    failures = value["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        ids.add(identifier)
    return ids


def _delete(sqs_client: SQSClient, queue_url: str, records: list[dict[str, Any]]) -> int:
    if not records:
        return 0
    response = sqs_client.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
            for index, record in enumerate(records)
        ],
    )
    for failure in response.get("Failed", []):
        # The message comes back after its visibility timeout and is processed again.
        logger.warning(
            "emulator.event_source.delete_failed",
            code=failure.get("Code"),
            error=failure.get("Message"),
        )
    return len(response.get("Successful", []))


def lambda_invoker(lambda_client: LambdaClient, function_name: str) -> EventInvoker:
    """Invoke a function through the Lambda API (thus moto's hook), as Lambda's poller does."""

    def invoke(event: dict[str, Any]) -> InvocationResult:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        payload = response["Payload"].read()
        error = response.get("FunctionError")
        if error is None:
            return InvocationResult(payload)
        try:
            document = json.loads(payload)
        except json.JSONDecodeError:
            document = {}
        return InvocationResult(
            payload,
            str(document.get("errorType", error)),
            str(document.get("errorMessage", "")),
        )

    return invoke


def dispatcher_invoker(
    dispatcher: LambdaDispatcher, function_name: str, *, region: str, account_id: str
) -> EventInvoker:
    """Invoke a function through the emulator's Lambda in this process: what `lambda_invoker`
    does, less the HTTP round trip to the emulator (the local engine's pollers)."""

    def invoke(event: dict[str, Any]) -> InvocationResult:
        payload = json.dumps(event).encode()
        return dispatcher.invoke(function_name, payload, region=region, account_id=account_id)

    return invoke


# --- the poller thread ----------------------------------------------------------------------


@dataclass
class PollerStats:
    """Running totals of one poller."""

    polls: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0
    errors: int = 0  # SQS calls that failed
    last_error: str | None = None

    def add(self, poll: PollStats) -> None:
        self.polls += 1
        self.received += poll.received
        self.deleted += poll.deleted
        self.failed += poll.failed


@dataclass
class IngestPoller:
    """Polls one queue in a thread and feeds the batches to `invoke` (the ingest function).

    Long polling with a short wait, so `stop()` returns within about `wait_time_s`. SQS errors
    (e.g. the emulator restarting, the queue deleted by a destroy) are logged and retried with
    exponential backoff; any other exception is a bug and ends the thread loudly.
    """

    sqs_client: SQSClient
    queue_url: str
    queue_arn: str
    invoke: EventInvoker
    wait_time_s: int = 1
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    stats: PollerStats = field(default_factory=PollerStats)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"ingest-poller:{self.queue_arn.rsplit(':', 1)[-1]}", daemon=True
        )
        self._thread.start()
        logger.info("emulator.poller.started", queue=self.queue_arn)

    def request_stop(self) -> None:
        """Ask the thread to stop after its current poll, without waiting (`stop` waits): a
        host with many pollers asks them all first, so their long polls end together."""
        self._stop.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                raise RuntimeError(f"the poller of {self.queue_arn} did not stop in {timeout_s}s")
        self._thread = None
        logger.info("emulator.poller.stopped", queue=self.queue_arn, received=self.stats.received)

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            try:
                poll = poll_once(
                    self.sqs_client,
                    self.queue_url,
                    self.queue_arn,
                    self.invoke,
                    wait_time_s=self.wait_time_s,
                )
            except (ClientError, BotoCoreError) as exc:
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                logger.warning(
                    "emulator.poller.sqs_error", queue=self.queue_arn, error=str(exc), retry_s=delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            delay = self.backoff_initial_s
            self.stats.add(poll)
