"""The emulator in server mode: the spec applied over HTTP, S3 → EventBridge → SQS, Step Functions
(each integration calling back into the server)."""

from __future__ import annotations

import json
import os
import time
import uuid

import boto3
import pytest

from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.event_source import poll_once
from provisioner.emulator.lambda_dispatch import InvocationResult, LambdaDispatcher
from provisioner.emulator.server import EmulatorServer
from stacks.config import PipelineConfig
from tests.emulator.conftest import REGION

pytestmark = pytest.mark.slow


def test_server_lifecycle(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_PORT", "5000")
    server = EmulatorServer(port=0)
    assert not server.healthy()
    with server:
        assert server.port > 0
        assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
        # The interpreter calls back at MOTO_PORT: the internal listener, a port of its own.
        assert server.internal_port not in (0, server.port)
        assert server.internal_endpoint_url == f"http://127.0.0.1:{server.internal_port}"
        assert os.environ["MOTO_PORT"] == str(server.internal_port)
        assert server.healthy()
        with pytest.raises(RuntimeError, match="already running"):
            EmulatorServer(port=0).start()
    assert os.environ["MOTO_PORT"] == "5000"
    assert not server.running
    assert not server.healthy()


def test_moto_api_is_served_on_the_internal_listener_only(emulator: EmulatorServer) -> None:
    import urllib.error
    import urllib.request

    def post(endpoint: str) -> int:
        request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    s3 = boto3.client("s3", endpoint_url=emulator.endpoint_url, region_name=REGION)
    s3.create_bucket(Bucket="kept")
    assert post(emulator.endpoint_url) == 404
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["kept"]  # nothing was reset
    assert post(emulator.internal_endpoint_url) == 200
    assert s3.list_buckets()["Buckets"] == []


def test_taken_port_fails_clearly(aws_credentials: None) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(
            RuntimeError, match=f"cannot start the AWS emulator on 127.0.0.1:{port}"
        ):
            EmulatorServer(port=port).start()


def test_uploads_reach_the_ingest_queue_over_http(
    emulator: EmulatorServer, dispatcher: LambdaDispatcher
) -> None:
    clients = AwsClients.for_endpoint(emulator.endpoint_url, region=REGION)
    config = PipelineConfig(tenant="acme", environment="dev")
    outputs = apply_pipeline(config, clients, api_endpoint="http://127.0.0.1:1/api")
    bucket, queue_url = outputs["bucketName"], outputs["ingestQueueUrl"]
    queue_arn = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    clients.s3.put_object(Bucket=bucket, Key="incoming/a b+c.csv", Body=b"timestamp\n")
    upload = clients.s3.create_multipart_upload(Bucket=bucket, Key="incoming/big é.csv")
    part = clients.s3.upload_part(
        Bucket=bucket,
        Key="incoming/big é.csv",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"timestamp,symbol,price,size\n",
    )
    clients.s3.complete_multipart_upload(
        Bucket=bucket,
        Key="incoming/big é.csv",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    clients.s3.put_object(Bucket=bucket, Key="elsewhere/x.csv", Body=b"x")
    clients.s3.put_object(Bucket=bucket, Key="results/r.json", Body=b"{}")

    # moto puts the raw key in the event (architecture.md §5); the emulated event source delivers it
    # URL-encoded, as AWS does.
    events: list[dict[str, object]] = []

    def ingest(event: dict[str, object]) -> InvocationResult:
        events.append(event)
        return InvocationResult.success({"batchItemFailures": []})

    stats = poll_once(clients.sqs, queue_url, queue_arn, ingest)
    assert (stats.received, stats.deleted) == (2, 2)
    (event,) = events
    records = event["Records"]
    assert isinstance(records, list)
    keys = [json.loads(record["body"])["detail"]["object"]["key"] for record in records]
    assert keys == ["incoming/a+b%2Bc.csv", "incoming/big+%C3%A9.csv"]
    assert poll_once(clients.sqs, queue_url, queue_arn, ingest).received == 0


def test_step_functions_integrations_call_back_into_the_server(emulator: EmulatorServer) -> None:
    """MOTO_PORT points the interpreter's service integrations at this server."""
    clients = AwsClients.for_endpoint(emulator.endpoint_url, region=REGION)
    clients.dynamodb.create_table(
        TableName="sfn-callback",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    definition = {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": "sfn-callback", "Item": {"id": {"S.$": "$.id"}}},
                "End": True,
            }
        },
    }
    machine = clients.stepfunctions.create_state_machine(
        name="callback",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    execution = clients.stepfunctions.start_execution(
        stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps({"id": "x1"})
    )["executionArn"]
    deadline = time.monotonic() + 15
    status = "RUNNING"
    while status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = clients.stepfunctions.describe_execution(executionArn=execution)["status"]
    assert status == "SUCCEEDED"
    item = clients.dynamodb.get_item(TableName="sfn-callback", Key={"id": {"S": "x1"}})
    assert item["Item"] == {"id": {"S": "x1"}}
