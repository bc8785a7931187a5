"""The whole data plane on moto, in-process: the spec applied, the real handlers and the real
state machine, from an S3 upload to `results/{fileId}.json` and the status item.

Uploads go through S3 → EventBridge → the ingest FIFO queue (moto), the emulated event source
feeds `handlers.ingest` through the Lambda API, and moto's Step Functions interpreter runs the
definition of `stacks.state_machine`, whose Lambda tasks reach the handlers through the
emulator's dispatcher, each with exactly its function's environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws

from handlers.core import runtime
from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.event_source import lambda_invoker, poll_once
from provisioner.emulator.lambda_dispatch import LambdaDispatcher
from provisioner.emulator.lambda_runtime import pipeline_invokers
from provisioner.emulator.server import EMULATOR_CONFIG
from stacks import spec
from stacks.config import PipelineConfig
from stacks.state_machine import RetryPolicy
from tests.emulator.conftest import REGION, fake_aws_environment
from tests.handlers.reference import results_symbols

pytestmark = pytest.mark.slow

# Retries a second apart at most (full jitter), so the retry cases stay short.
RETRY = RetryPolicy(interval_s=1, max_attempts=2, backoff_rate=1.0, max_delay_s=1)
ACCOUNT = "123456789012"

VALID_ROWS = [
    # out of timestamp order on purpose: open/close go by time, not by row
    ("2024-03-01T09:30:02Z", "ACME", "101.25", "200"),
    ("2024-03-01T09:30:00Z", "ACME", "100.50", "100"),
    ("2024-03-01T11:30:05+02:00", "ACME", "99.75", "300"),  # 09:30:05Z, the last
    ("2024-03-01T09:30:01.5Z", "BRK.B", "412.10", "7"),
    ("2024-03-01T09:30:03Z", "BRK.B", "411.9", "3"),
    ("2024-03-01T09:30:04Z", "ACME", "102", "50"),
]


def _csv(rows: list[tuple[str, ...]], header: str = "timestamp,symbol,price,size") -> bytes:
    return (header + "\n" + "".join(",".join(row) + "\n" for row in rows)).encode()


@dataclass
class Pipeline:
    """One applied environment and the means to drive it."""

    config: PipelineConfig
    clients: AwsClients
    outputs: dict[str, str]
    dispatcher: LambdaDispatcher

    @property
    def bucket(self) -> str:
        return self.outputs["bucketName"]

    def upload(self, key: str, body: bytes) -> str:
        return self.clients.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]

    def file_id(self, key: str, version_id: str) -> str:
        return hashlib.sha256(f"{self.bucket}/{key}#{version_id}".encode()).hexdigest()

    def drain_ingest(self) -> int:
        """What the Lambda service's poller does, until the ingest queue is empty."""
        queue_url = self.outputs["ingestQueueUrl"]
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
        ingest = lambda_invoker(self.clients.lambda_, self.outputs["ingestFunctionName"])
        received = 0
        while True:
            stats = poll_once(self.clients.sqs, queue_url, queue_arn, ingest)
            assert stats.failed == 0, stats
            if stats.received == 0:
                return received
            received += stats.received

    def executions(self) -> list[dict[str, Any]]:
        paginator = self.clients.stepfunctions.get_paginator("list_executions")
        pages = paginator.paginate(stateMachineArn=self.outputs["stateMachineArn"])
        return [execution for page in pages for execution in page["executions"]]

    def wait(self, expected: int, timeout_s: float = 20) -> list[dict[str, Any]]:
        """Every execution, once `expected` of them exist and none is running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            executions = self.executions()
            if len(executions) >= expected and all(e["status"] != "RUNNING" for e in executions):
                return executions
            time.sleep(0.05)
        raise AssertionError(f"executions still running after {timeout_s}s: {self.executions()}")

    def status(self, file_id: str) -> dict[str, Any]:
        item = self.clients.dynamodb.get_item(
            TableName=self.outputs["statusTableName"], Key={"fileId": {"S": file_id}}
        )["Item"]
        deserializer = TypeDeserializer()
        return {key: deserializer.deserialize(value) for key, value in item.items()}

    def result(self, file_id: str) -> dict[str, Any]:
        body = self.clients.s3.get_object(Bucket=self.bucket, Key=f"results/{file_id}.json")
        document: dict[str, Any] = json.loads(body["Body"].read())
        return document

    def dlq_messages(self, output: str) -> list[dict[str, Any]]:
        response = self.clients.sqs.receive_message(
            QueueUrl=self.outputs[output], MaxNumberOfMessages=10
        )
        return [json.loads(message["Body"]) for message in response.get("Messages", [])]


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    config = PipelineConfig(tenant="acme", environment="e2e")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_environment(monkeypatch)
        runtime.reset_clients()
        with mock_aws(config=EMULATOR_CONFIG), LambdaDispatcher() as dispatcher:  # type: ignore[arg-type]
            clients = AwsClients.from_session(region=REGION)
            outputs = apply_pipeline(
                config, clients, api_endpoint="http://127.0.0.1:1/api", retry=RETRY
            )
            for function, invoker in pipeline_invokers(config).items():
                dispatcher.register(function, invoker)
            yield Pipeline(config, clients, outputs, dispatcher)
        runtime.reset_clients()


def _fail_get_object(
    monkeypatch: pytest.MonkeyPatch, function_name: str, key: str, times: int
) -> list[str]:
    """Make `function_name`'s S3 GetObject of `key` throttle `times` times (beneath the SDK's own
    retries, so the handler sees the ClientError and the state machine's Retry takes over)."""
    calls: list[str] = []
    original: Callable[..., Any] = BaseClient._make_api_call

    def throttled(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if (
            operation == "GetObject"
            and params.get("Key") == key
            and os.environ.get("AWS_LAMBDA_FUNCTION_NAME") == function_name
        ):
            calls.append(operation)
            if len(calls) <= times:
                raise ClientError(
                    {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                    operation,
                )
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttled)
    return calls


def test_valid_bad_redelivered_and_new_version(pipeline: Pipeline) -> None:
    p = pipeline
    valid_body = _csv(VALID_ROWS)
    second_body = _csv([("2024-03-02T10:00:00Z", "ACME", "50", "10")])

    valid_key = "incoming/day one/trades+ünï.csv"
    v1 = p.upload(valid_key, valid_body)
    bad_version = p.upload("incoming/bad.csv", _csv(VALID_ROWS, header="time,ticker,px,qty"))
    p.upload("elsewhere/ignored.csv", valid_body)  # outside incoming/: no event

    assert p.drain_ingest() == 2
    assert len(p.wait(expected=2)) == 2

    # A valid file: COMPLETED, results equal to an independent computation.
    valid_id = p.file_id(valid_key, v1)
    item = p.status(valid_id)
    assert item["status"] == "COMPLETED"
    assert item["objectKey"] == valid_key
    assert item["versionId"] == v1
    assert item["rowCount"] == len(VALID_ROWS)
    assert item["rejectedRows"] == 0
    assert item["resultKey"] == f"results/{valid_id}.json"
    result = p.result(valid_id)
    assert result["fileId"] == valid_id
    assert result["objectKey"] == valid_key
    assert (result["rows"], result["rejectedRows"]) == (len(VALID_ROWS), 0)
    assert result["symbols"] == results_symbols(valid_body.decode())
    assert result["symbols"]["ACME"]["close"] == 99.75  # the latest trade, third row

    # A bad file: FAILED at the validator, with a reason, and one message in its DLQ.
    bad_id = p.file_id("incoming/bad.csv", bad_version)
    bad = p.status(bad_id)
    assert bad["status"] == "FAILED"
    assert bad["error"]["stage"] == "validator"
    assert bad["error"]["type"] == "InvalidFileError"
    assert "header" in bad["error"]["message"].lower()
    (dead,) = p.dlq_messages("validatorDlqUrl")
    assert dead["fileId"] == bad_id
    assert dead["error"]["stage"] == "validator"
    assert p.dlq_messages("processorDlqUrl") == []

    # The same version delivered again (SQS is at-least-once): still one execution.
    redelivered = {
        "version": "0",
        "id": "9d3a1e6e-0000-4000-8000-000000000001",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2024-03-01T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{p.bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": p.bucket},
            "object": {"key": valid_key, "size": len(valid_body), "version-id": v1},
            "reason": "PutObject",
        },
    }
    p.clients.sqs.send_message(
        QueueUrl=p.outputs["ingestQueueUrl"],
        MessageBody=json.dumps(redelivered),
        MessageGroupId=spec.INGEST_MESSAGE_GROUP,
        MessageDeduplicationId="redelivery-1",
    )
    assert p.drain_ingest() == 1
    executions = p.wait(expected=2)
    assert len(executions) == 2
    assert [e["name"] for e in executions].count(valid_id) == 1
    assert p.status(valid_id)["status"] == "COMPLETED"

    # A new version of the same key: its own fileId, its own execution, its own result.
    v2 = p.upload(valid_key, second_body)
    assert p.drain_ingest() == 1
    executions = p.wait(expected=3)
    second_id = p.file_id(valid_key, v2)
    assert second_id != valid_id
    assert {e["name"]: e["status"] for e in executions}[second_id] == "SUCCEEDED"
    assert p.status(second_id)["status"] == "COMPLETED"
    assert p.result(second_id)["symbols"] == results_symbols(second_body.decode())
    assert p.result(valid_id)["symbols"] == results_symbols(valid_body.decode())


def test_transient_errors_are_retried_and_persistent_ones_fail_the_stage(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline
    processor = p.outputs["processorFunctionName"]
    flaky_body = _csv([("2024-03-01T10:00:00Z", "ZED", "1.5", "2")])
    doomed_body = _csv([("2024-03-01T10:00:00Z", "ZED", "2.5", "4")])
    once = _fail_get_object(monkeypatch, processor, "incoming/flaky.csv", times=1)
    always = _fail_get_object(monkeypatch, processor, "incoming/doomed.csv", times=99)

    flaky_version = p.upload("incoming/flaky.csv", flaky_body)
    doomed_version = p.upload("incoming/doomed.csv", doomed_body)
    assert p.drain_ingest() == 2
    p.wait(expected=2)

    # Throttled once: the state machine retried the processor and the file completed.
    flaky_id = p.file_id("incoming/flaky.csv", flaky_version)
    assert p.status(flaky_id)["status"] == "COMPLETED"
    assert len(once) == 2
    assert p.result(flaky_id)["symbols"] == results_symbols(flaky_body.decode())

    # Throttled on every attempt: FAILED at the processor, and in the processor's DLQ.
    doomed_id = p.file_id("incoming/doomed.csv", doomed_version)
    doomed = p.status(doomed_id)
    assert doomed["status"] == "FAILED", doomed
    assert doomed["error"]["stage"] == "processor", doomed["error"]
    assert doomed["error"]["type"] == "ClientError"
    assert "SlowDown" in doomed["error"]["message"]
    assert len(always) == 1 + RETRY.max_attempts
    assert [m["fileId"] for m in p.dlq_messages("processorDlqUrl")] == [doomed_id]
    assert p.dlq_messages("validatorDlqUrl") == []
    assert p.dlq_messages("aggregatorDlqUrl") == []
