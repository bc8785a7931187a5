"""The in-process transport: the emulator's answers without the socket, the same as over HTTP."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

from provisioner.emulator.gate import Environ, StartResponse
from provisioner.emulator.in_process import InProcessTransport
from provisioner.emulator.lambda_dispatch import (
    DeployedFunction,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.server import EmulatorServer
from tests.emulator.conftest import REGION

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"


class CountingTransport(InProcessTransport):
    """The transport, counting the requests it answered (to show they skipped the socket)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.answered: list[str] = []

    def send(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        response = super().send(request, **kwargs)
        if response is not None:
            self.answered.append(f"{request.method} {request.url}")
        return response


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0)
    server.start()
    try:
        yield server
    finally:
        server.reset()
        server.stop()


@pytest.fixture
def transport(emulator: EmulatorServer) -> CountingTransport:
    return CountingTransport(emulator.gate, emulator.internal_endpoint_url)


def _config() -> Config:
    return Config(retries={"max_attempts": 1, "mode": "standard"})


def _clients(
    emulator: EmulatorServer, transport: InProcessTransport, service: str
) -> tuple[Any, Any]:
    """The same service's client over HTTP and in process."""
    session = boto3.session.Session(region_name=REGION)
    http = session.client(service, endpoint_url=emulator.internal_endpoint_url, config=_config())  # type: ignore[call-overload]
    local = transport.session(region=REGION).client(  # type: ignore[call-overload]
        service, endpoint_url=emulator.internal_endpoint_url, config=_config()
    )
    return http, local


def _without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    """A parsed response less what differs between any two requests (request id, date)."""
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def _error(call: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


# --- the environ --------------------------------------------------------------------------------


def test_the_environ_is_the_one_werkzeugs_server_builds(transport: InProcessTransport) -> None:
    """The same request over a real werkzeug server (moto's request handler) and in process."""
    seen: list[Environ] = []

    def recorder(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ = dict(environ)
        environ["wsgi.input"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        seen.append(environ)
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [b"<PutObjectResult/>"]

    server = make_server(
        "127.0.0.1", 0, recorder, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        recording = InProcessTransport(recorder, endpoint)
        session = boto3.session.Session(region_name=REGION)
        for client in (
            session.client("s3", endpoint_url=endpoint, config=_config()),
            recording.attach(session.client("s3", endpoint_url=endpoint, config=_config())),
        ):
            client.put_object(
                Bucket="bucket-one",
                Key="incoming/a b+c/é%2F.csv",
                Body=b"timestamp,symbol\n",
                Metadata={"my_key": "underscored", "plain": "value"},
                ContentType="text/csv",
            )
    finally:
        server.shutdown()
        thread.join(5)
    over_http, in_process = seen
    # What only a socket has: the peer's port, the socket itself, the server's name and version.
    for environ in seen:
        for key in ("REMOTE_PORT", "werkzeug.socket", "SERVER_SOFTWARE", "wsgi.errors"):
            environ.pop(key, None)
    # The signature covers the time of the request; the user agent lists the SDK features each
    # client has used so far. Both carry them.
    volatile = (
        "HTTP_X_AMZ_DATE",
        "HTTP_AUTHORIZATION",
        "HTTP_AMZ_SDK_INVOCATION_ID",
        "HTTP_USER_AGENT",
    )
    for key in volatile:
        assert bool(over_http.pop(key, None)) == bool(in_process.pop(key, None))
    assert in_process == over_http


# --- the answers, service by service --------------------------------------------------------


def test_s3_answers_as_over_http(emulator: EmulatorServer, transport: CountingTransport) -> None:
    http, local = _clients(emulator, transport, "s3")
    http.create_bucket(Bucket="bucket-one")
    http.put_bucket_versioning(Bucket="bucket-one", VersioningConfiguration={"Status": "Enabled"})
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    key = "incoming/a b+c/é%2F.csv"
    # Written in process (a file-like body: an aws-chunked upload with a checksum trailer)...
    version = local.put_object(
        Bucket="bucket-one", Key=key, Body=io.BytesIO(body), Metadata={"my_key": "v", "k": "w"}
    )["VersionId"]
    # ... read over HTTP, and the other way round.
    http.put_object(Bucket="bucket-one", Key="second.csv", Body=body)
    for written in (key, "second.csv"):
        answers = [client.get_object(Bucket="bucket-one", Key=written) for client in (http, local)]
        bodies = [answer.pop("Body") for answer in answers]
        assert _without_metadata(answers[0]) == _without_metadata(answers[1])
        # Streamed in chunks, as a handler reads a large object.
        assert [b"".join(stream.iter_chunks(65536)) for stream in bodies] == [body, body]
    assert http.get_object(Bucket="bucket-one", Key=key, VersionId=version)["Metadata"] == {
        "my_key": "v",
        "k": "w",
    }
    ranged = [
        client.get_object(Bucket="bucket-one", Key=key, Range="bytes=10-19")
        for client in (http, local)
    ]
    assert [answer["Body"].read() for answer in ranged] == [body[10:20], body[10:20]]
    assert [answer["ResponseMetadata"]["HTTPStatusCode"] for answer in ranged] == [206, 206]
    heads = [_without_metadata(c.head_object(Bucket="bucket-one", Key=key)) for c in (http, local)]
    assert heads[0] == heads[1]
    assert heads[1]["ContentLength"] == len(body)
    listings = [_without_metadata(c.list_objects_v2(Bucket="bucket-one")) for c in (http, local)]
    assert listings[0] == listings[1]
    assert listings[1]["KeyCount"] == 2
    assert _error(http.get_object, Bucket="bucket-one", Key="missing") == _error(
        local.get_object, Bucket="bucket-one", Key="missing"
    )
    missing_head = _error(local.head_object, Bucket="bucket-one", Key="missing")
    assert missing_head == _error(http.head_object, Bucket="bucket-one", Key="missing")
    assert missing_head[0] == 404
    local.delete_object(Bucket="bucket-one", Key="second.csv")
    assert [o["Key"] for o in http.list_objects_v2(Bucket="bucket-one")["Contents"]] == [key]
    assert len(transport.answered) == 9  # every in-process call, none over the socket


def test_dynamodb_answers_as_over_http(
    emulator: EmulatorServer, transport: CountingTransport
) -> None:
    http, local = _clients(emulator, transport, "dynamodb")
    local.create_table(
        TableName="status",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "fileId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "fileId", "AttributeType": "S"}],
    )
    local.put_item(TableName="status", Item={"fileId": {"S": "a"}, "rank": {"N": "1"}})
    update = {
        "TableName": "status",
        "Key": {"fileId": {"S": "a"}},
        "UpdateExpression": "SET #rank = :rank",
        "ConditionExpression": "#rank <= :rank",
        "ExpressionAttributeNames": {"#rank": "rank"},
        "ExpressionAttributeValues": {":rank": {"N": "3"}},
        "ReturnValues": "ALL_NEW",
    }
    assert _without_metadata(local.update_item(**update))["Attributes"]["rank"] == {"N": "3"}
    lower = {**update, "ExpressionAttributeValues": {":rank": {"N": "2"}}}
    failed = _error(local.update_item, **lower)
    assert failed == _error(http.update_item, **lower)
    assert failed[1]["Code"] == "ConditionalCheckFailedException"
    key = {"TableName": "status", "Key": {"fileId": {"S": "a"}}}
    assert _without_metadata(http.get_item(**key)) == _without_metadata(local.get_item(**key))
    assert _without_metadata(http.scan(TableName="status")) == _without_metadata(
        local.scan(TableName="status")
    )
    assert _error(http.get_item, TableName="none", Key={"fileId": {"S": "a"}}) == _error(
        local.get_item, TableName="none", Key={"fileId": {"S": "a"}}
    )


def test_sqs_answers_as_over_http(emulator: EmulatorServer, transport: CountingTransport) -> None:
    http, local = _clients(emulator, transport, "sqs")
    url = local.create_queue(
        QueueName="ingest.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    assert http.get_queue_url(QueueName="ingest.fifo")["QueueUrl"] == url
    local.send_message(QueueUrl=url, MessageBody='{"n": 1}', MessageGroupId="g")
    received = local.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [message["Body"] for message in received] == ['{"n": 1}']
    deleted = local.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": received[0]["ReceiptHandle"]}]
    )
    assert [entry["Id"] for entry in deleted["Successful"]] == ["0"]
    assert "Messages" not in http.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    missing = _error(local.get_queue_url, QueueName="missing")
    assert missing == _error(http.get_queue_url, QueueName="missing")
    assert missing[1]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def _function(emulator: EmulatorServer, name: str) -> str:
    """A function `name` in the emulator (its code never runs: a dispatcher answers)."""
    session = boto3.session.Session(region_name=REGION)
    iam = session.client("iam", endpoint_url=emulator.internal_endpoint_url)
    role = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("handler.py", "def handler(event, context):\n    return event\n")
    lambda_ = session.client("lambda", endpoint_url=emulator.internal_endpoint_url)
    arn: str = lambda_.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]
    return arn


def test_lambda_invoke_answers_as_over_http(
    emulator: EmulatorServer, transport: CountingTransport
) -> None:
    http, local = _clients(emulator, transport, "lambda")
    _function(emulator, "echo")

    def invoker(function: DeployedFunction, payload: bytes) -> InvocationResult:
        event = json.loads(payload)
        if event.get("fail"):
            return InvocationResult.failure("InvalidFileError", "bad header")
        return InvocationResult.success({"seen": event, "function": function.name})

    with LambdaDispatcher() as dispatcher:
        dispatcher.register("echo", invoker)
        for event in ({"n": 1}, {"fail": True}):
            answers = [
                client.invoke(FunctionName="echo", Payload=json.dumps(event).encode())
                for client in (http, local)
            ]
            payloads = [json.loads(answer.pop("Payload").read()) for answer in answers]
            assert payloads[0] == payloads[1]
            assert answers[0].get("FunctionError") == answers[1].get("FunctionError")
            assert answers[1]["StatusCode"] == 200
        assert payloads[1]["errorType"] == "InvalidFileError"
        assert answers[1]["FunctionError"] == "Unhandled"
        missing = _error(local.invoke, FunctionName="missing", Payload=b"{}")
        assert missing == _error(http.invoke, FunctionName="missing", Payload=b"{}")
        assert missing[1]["Code"] == "ResourceNotFoundException"


def test_step_functions_answer_as_over_http(
    emulator: EmulatorServer, transport: CountingTransport
) -> None:
    http, local = _clients(emulator, transport, "stepfunctions")
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    machine = local.create_state_machine(
        name="passing",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    name = uuid.uuid4().hex
    execution = local.start_execution(stateMachineArn=machine, name=name, input='{"a": 1}')
    again = _error(local.start_execution, stateMachineArn=machine, name=name, input='{"a": 2}')
    assert again == _error(http.start_execution, stateMachineArn=machine, name=name, input="{}")
    assert again[1]["Code"] == "ExecutionAlreadyExists"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        described = [
            _without_metadata(client.describe_execution(executionArn=execution["executionArn"]))
            for client in (http, local)
        ]
        if described[1]["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert described[0] == described[1]
    assert described[1]["status"] == "SUCCEEDED"
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:missing"
    assert _error(local.describe_state_machine, stateMachineArn=missing) == _error(
        http.describe_state_machine, stateMachineArn=missing
    )


# --- the gate, other endpoints, failures -------------------------------------------------------


def test_the_gate_holds_in_process_requests(
    emulator: EmulatorServer, transport: CountingTransport
) -> None:
    http, local = _clients(emulator, transport, "s3")
    http.create_bucket(Bucket="bucket-one")
    finished = threading.Event()

    def upload() -> None:
        local.put_object(Bucket="bucket-one", Key="held.csv", Body=b"x")
        finished.set()

    with emulator.gate.paused(timeout_s=5) as changes:
        thread = threading.Thread(target=upload)
        thread.start()
        assert not finished.wait(0.5)  # held at the gate while the snapshot would be taken
        assert emulator.gate.changes == changes
    thread.join(10)
    assert finished.is_set()
    assert emulator.gate.changes == changes + 1
    assert http.get_object(Bucket="bucket-one", Key="held.csv")["Body"].read() == b"x"


def test_requests_for_another_endpoint_go_over_the_network(
    emulator: EmulatorServer, transport: CountingTransport
) -> None:
    assert transport.handles(f"{emulator.internal_endpoint_url}/bucket?list-type=2")
    assert not transport.handles(f"http://127.0.0.1:{emulator.port}/bucket")  # the published one
    assert not transport.handles("https://s3.us-east-1.amazonaws.com/bucket")
    elsewhere = AWSPreparedRequest("GET", "https://s3.amazonaws.com/", {}, None, False)
    assert transport.send(elsewhere) is None
    with pytest.raises(ValueError, match="not an emulator endpoint"):
        InProcessTransport(emulator.gate, "http://127.0.0.1")


def test_an_application_that_raises_answers_500(transport: InProcessTransport) -> None:
    def broken(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("moto broke")

    failing = InProcessTransport(broken, transport.endpoint_url)
    client = failing.attach(
        boto3.session.Session(region_name=REGION).client(
            "sqs", endpoint_url=transport.endpoint_url, config=_config()
        )
    )
    status, _error_fields = _error(client.list_queues)
    assert status == 500


def test_bodiless_answers_carry_no_body(transport: InProcessTransport) -> None:
    def chatty(environ: Environ, start_response: StartResponse) -> list[bytes]:
        status = "204 No Content" if environ["REQUEST_METHOD"] == "DELETE" else "200 OK"
        start_response(status, [("Content-Length", "5")])
        return [b"hello"]

    chatty_transport = InProcessTransport(chatty, transport.endpoint_url)
    for method, status in (("HEAD", 200), ("DELETE", 204), ("GET", 200)):
        request = AWSPreparedRequest(method, f"{transport.endpoint_url}/x", {}, None, False)
        response = chatty_transport.send(request)
        assert response is not None
        assert response.status_code == status
        assert response.content == (b"hello" if method == "GET" else b"")
