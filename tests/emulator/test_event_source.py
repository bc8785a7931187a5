"""The emulated SQS → Lambda event source mapping and the AWS-shaped records it delivers."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.apply import AwsClients, queue_attributes
from provisioner.emulator.event_source import (
    MOTO_S3_EVENT_ID,
    IngestPoller,
    aws_shaped_body,
    lambda_invoker,
    poll_once,
)
from provisioner.emulator.lambda_dispatch import InvocationResult, LambdaDispatcher
from provisioner.emulator.lambda_runtime import handler_invoker
from stacks import spec
from stacks.config import PipelineConfig
from tests.emulator.test_lambda_dispatch import _create_function

Event = dict[str, Any]


class Recorder:
    """An invoker that records every event and answers with `respond(event)`."""

    def __init__(self, respond: Any = None) -> None:
        self.events: list[Event] = []
        self._respond = respond or (lambda event: InvocationResult.success(None))
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> InvocationResult:
        with self._lock:
            self.events.append(event)
        result: InvocationResult = self._respond(event)
        return result

    @property
    def records(self) -> list[Event]:
        return [record for event in self.events for record in event["Records"]]


def _fail_poison(event: Event) -> InvocationResult:
    return InvocationResult.success(
        {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if "poison" in r["body"]
            ]
        }
    )


def _attributes(key: spec.QueueKey) -> dict[Any, str]:
    """The model's attributes of a queue, without its redrive and policy (named for another)."""
    settings = replace(
        spec.queue_settings()[key], dead_letter_queue=None, accepts_ingest_rule=False
    )
    arns = spec.pipeline_arns(PipelineConfig(tenant="acme", environment="dev"), MOTO_ACCOUNT_ID)
    return dict(queue_attributes(settings, arns))


def _fifo_queue(clients: AwsClients, name: str) -> tuple[str, str, str]:
    """A FIFO queue with a DLQ after 3 receives (the spec's redrive); returns url, arn, dlq url."""
    dlq_url = clients.sqs.create_queue(
        QueueName=f"{name}-dlq.fifo", Attributes=_attributes("ingest-dlq")
    )["QueueUrl"]
    dlq_arn = clients.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = {
        **_attributes("ingest"),
        "RedrivePolicy": json.dumps(spec.redrive_policy(dlq_arn)),
    }
    url = clients.sqs.create_queue(QueueName=f"{name}.fifo", Attributes=attributes)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn, dlq_url


def _send(clients: AwsClients, url: str, *bodies: str, group: str = "g") -> None:
    for body in bodies:
        clients.sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)


def _count(clients: AwsClients, url: str) -> int:
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# --- partial batch failures -----------------------------------------------------------------


def test_a_poison_record_is_the_only_one_kept(clients: AwsClients) -> None:
    url, arn, _ = _fifo_queue(clients, "batch")
    _send(clients, url, "ok-1", "poison", "ok-2")
    recorder = Recorder(_fail_poison)

    stats = poll_once(clients.sqs, url, arn, recorder)

    assert (stats.received, stats.deleted, stats.failed) == (3, 2, 1)
    assert len(recorder.events) == 1  # one invocation for the batch
    assert [r["body"] for r in recorder.records] == ["ok-1", "poison", "ok-2"]
    assert _count(clients, url) == 1  # only the poison record is left (in flight)


def test_a_failed_invocation_deletes_nothing(clients: AwsClients) -> None:
    url, arn, _ = _fifo_queue(clients, "broken")
    _send(clients, url, "a", "b")
    stats = poll_once(
        clients.sqs, url, arn, Recorder(lambda _e: InvocationResult.failure("Boom", "no"))
    )
    assert (stats.received, stats.deleted, stats.failed) == (2, 0, 2)
    assert stats.invocation_error == "Boom"
    assert _count(clients, url) == 2


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        {"batchItemFailures": "everything"},
        {"batchItemFailures": [{"id": "wrong-key"}]},
    ],
)
def test_an_invalid_batch_response_fails_the_whole_batch(
    clients: AwsClients, response: Event
) -> None:
    url, arn, _ = _fifo_queue(clients, "invalid")
    _send(clients, url, "a", "b")
    stats = poll_once(
        clients.sqs, url, arn, Recorder(lambda _e: InvocationResult.success(response))
    )
    assert (stats.deleted, stats.failed) == (0, 2)
    assert _count(clients, url) == 2


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, "ok"])
def test_an_empty_response_means_every_record_succeeded(clients: AwsClients, response: Any) -> None:
    url, arn, _ = _fifo_queue(clients, "empty")
    _send(clients, url, "a", "b")
    stats = poll_once(
        clients.sqs, url, arn, Recorder(lambda _e: InvocationResult.success(response))
    )
    assert (stats.deleted, stats.failed) == (2, 0)
    assert _count(clients, url) == 0


def test_a_record_failing_three_times_lands_in_the_dlq(clients: AwsClients) -> None:
    url, arn, dlq_url = _fifo_queue(clients, "redrive")
    _send(clients, url, "poison")
    recorder = Recorder(_fail_poison)
    counts = []
    for _ in range(3):
        stats = poll_once(clients.sqs, url, arn, recorder)
        assert stats.failed == 1
        record = recorder.records[-1]
        counts.append(record["attributes"]["ApproximateReceiveCount"])
        # Still invisible: a failed record waits out the visibility timeout…
        assert poll_once(clients.sqs, url, arn, recorder).received == 0
        # …which the test cuts short instead of waiting 30 s.
        clients.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )
    assert counts == ["1", "2", "3"]
    # The fourth receive finds it past maxReceiveCount: SQS moves it to the DLQ.
    assert poll_once(clients.sqs, url, arn, recorder).received == 0
    assert len(recorder.events) == 3
    assert _count(clients, url) == 0
    (dead,) = clients.sqs.receive_message(QueueUrl=dlq_url)["Messages"]
    assert dead["Body"] == "poison"


# --- the record shape and the adaptations ---------------------------------------------------


def _bucket_to_fifo(clients: AwsClients) -> tuple[str, str, str]:
    """A versioned bucket whose incoming/ objects reach a FIFO queue, as the spec wires it."""
    bucket = "p-acme-dev-keys"
    clients.s3.create_bucket(Bucket=bucket)
    clients.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    clients.s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    url, arn, _ = _fifo_queue(clients, "keys")
    clients.events.put_rule(
        Name="keys", EventPattern=json.dumps(spec.ingest_rule_event_pattern(bucket))
    )
    clients.events.put_targets(
        Rule="keys",
        Targets=[
            {"Id": "q", "Arn": arn, "SqsParameters": {"MessageGroupId": spec.INGEST_MESSAGE_GROUP}}
        ],
    )
    return bucket, url, arn


KEYS = ["incoming/a b+c.csv", "incoming/ünï/çødé €.csv", "incoming/x=1&y=2;%41.csv"]


def test_s3_keys_arrive_url_encoded_as_aws_sends_them(clients: AwsClients) -> None:
    bucket, url, arn = _bucket_to_fifo(clients)
    versions = {
        key: clients.s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"] for key in KEYS
    }
    recorder = Recorder()
    poll_once(clients.sqs, url, arn, recorder)

    bodies = [json.loads(record["body"]) for record in recorder.records]
    encoded = [body["detail"]["object"]["key"] for body in bodies]
    assert encoded == ["incoming/a+b%2Bc.csv", *encoded[1:]]
    assert all(" " not in key and "ü" not in key for key in encoded)
    assert [unquote_plus(key) for key in encoded] == KEYS
    # What the handlers use: Powertools decodes it back to the real key.
    for record, key in zip(recorder.records, KEYS, strict=True):
        event = S3EventBridgeNotificationEvent(json.loads(record["body"]))
        assert event.detail.object.key == key
        assert event.detail.object.version_id == versions[key]
        assert event.detail.bucket.name == bucket
        assert event.detail.object.etag == hashlib.md5(b"x").hexdigest()
    assert len({body["id"] for body in bodies}) == len(KEYS)
    assert MOTO_S3_EVENT_ID not in {body["id"] for body in bodies}


def test_records_have_the_lambda_sqs_event_shape(clients: AwsClients) -> None:
    bucket, url, arn = _bucket_to_fifo(clients)
    clients.s3.put_object(Bucket=bucket, Key="incoming/one.csv", Body=b"x")
    recorder = Recorder()
    poll_once(clients.sqs, url, arn, recorder)
    (record,) = recorder.records
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["MessageGroupId"] == spec.INGEST_MESSAGE_GROUP
    assert len(attributes["MessageDeduplicationId"]) == 64  # content-based: a SHA-256
    assert len(attributes["SequenceNumber"]) == 20
    assert attributes["SequenceNumber"].isdigit()
    for name in ("SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"):
        assert attributes[name]


def test_message_attributes_use_the_lambda_spelling(clients: AwsClients) -> None:
    url, arn, _ = _fifo_queue(clients, "attrs")
    clients.sqs.send_message(
        QueueUrl=url,
        MessageBody="b",
        MessageGroupId="g",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "upload"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    recorder = Recorder()
    poll_once(clients.sqs, url, arn, recorder)
    (record,) = recorder.records
    assert record["messageAttributes"]["kind"]["stringValue"] == "upload"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
    assert "md5OfMessageAttributes" in record


def test_bodies_that_are_not_s3_events_are_left_alone() -> None:
    assert aws_shaped_body("plain text", "m") == "plain text"
    other = json.dumps({"source": "aws.ec2", "detail": {"object": {"key": "a b"}}})
    assert aws_shaped_body(other, "m") == other


# --- through the dispatcher and in a thread -------------------------------------------------


def test_poll_through_the_lambda_api_and_the_dispatcher(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    _create_function(clients, "fn-batch")
    dispatcher.register(
        "fn-batch",
        handler_invoker(
            "tests.emulator.standin_handlers.batch",
            {},
            function_name="fn-batch",
            memory_mb=256,
            timeout_s=30,
        ),
    )
    url, arn, _ = _fifo_queue(clients, "via-lambda")
    _send(clients, url, "ok", "poison")
    stats = poll_once(clients.sqs, url, arn, lambda_invoker(clients.lambda_, "fn-batch"))
    assert (stats.deleted, stats.failed) == (1, 1)

    dispatcher.unregister("fn-batch")
    # Another group: FIFO holds back the rest of a group while one of its messages is in flight.
    _send(clients, url, "later", group="h")
    stats = poll_once(clients.sqs, url, arn, lambda_invoker(clients.lambda_, "fn-batch"))
    assert stats.invocation_error == "LocalRuntimeUnavailable"


def test_moto_does_not_deliver_to_the_mapped_function_itself(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    """With the dispatcher installed, a stored mapping moves nothing: the poller does."""
    arn_fn = _create_function(clients, "fn-mapped")
    calls: list[bytes] = []
    dispatcher.register(
        "fn-mapped", lambda _function, body: calls.append(body) or InvocationResult(b"{}")
    )
    url, arn, _ = _fifo_queue(clients, "mapped")
    clients.lambda_.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=arn_fn, BatchSize=10
    )
    _send(clients, url, "m1")
    assert calls == []
    assert _count(clients, url) == 1
    stats = poll_once(clients.sqs, url, arn, lambda_invoker(clients.lambda_, "fn-mapped"))
    assert stats.deleted == 1
    assert len(calls) == 1


def test_without_the_dispatcher_moto_consumes_mapped_queues_itself(clients: AwsClients) -> None:
    """Why the dispatcher hides mappings: moto 5.2 would deliver (and delete) on its own."""
    arn_fn = _create_function(clients, "fn-unhooked")
    url, arn, _ = _fifo_queue(clients, "unhooked")
    clients.lambda_.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=arn_fn, BatchSize=10
    )
    _send(clients, url, "m1")
    assert _count(clients, url) == 0  # gone at once, to moto's canned Lambda "success"


def test_ingest_poller_drains_the_queue_and_stops_promptly(clients: AwsClients) -> None:
    url, arn, _ = _fifo_queue(clients, "poller")
    recorder = Recorder()
    poller = IngestPoller(clients.sqs, url, arn, recorder, wait_time_s=1)
    poller.start()
    try:
        _send(clients, url, "a", "b", "c")
        deadline = time.monotonic() + 10
        while poller.stats.deleted < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poller.stats.deleted == 3
        assert poller.running
    finally:
        started = time.monotonic()
        poller.stop()
    assert time.monotonic() - started < 3
    assert not poller.running
    assert sorted(r["body"] for r in recorder.records) == ["a", "b", "c"]


def test_pollers_asked_to_stop_together_end_without_waiting_for_each_other(
    clients: AwsClients,
) -> None:
    pollers = []
    for index in range(3):
        url, arn, _ = _fifo_queue(clients, f"many{index}")
        pollers.append(IngestPoller(clients.sqs, url, arn, Recorder(), wait_time_s=1))
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.request_stop()  # returns at once; the threads end after their current poll
    deadline = time.monotonic() + 15
    while any(poller.running for poller in pollers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(poller.running for poller in pollers)
    for poller in pollers:
        poller.stop()  # nothing left to wait for


def test_ingest_poller_backs_off_on_sqs_errors(clients: AwsClients) -> None:
    url, arn, _ = _fifo_queue(clients, "vanishing")
    clients.sqs.delete_queue(QueueUrl=url)
    poller = IngestPoller(
        clients.sqs, url, arn, Recorder(), wait_time_s=0, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    poller.start()
    try:
        deadline = time.monotonic() + 5
        while poller.stats.errors < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert poller.running
        assert poller.stats.errors >= 3
        assert poller.stats.last_error is not None
        assert "NonExistentQueue" in poller.stats.last_error or "QueueDoesNotExist" in (
            poller.stats.last_error
        )
    finally:
        poller.stop()
