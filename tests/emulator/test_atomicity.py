"""The emulator applies each request whole, as AWS does: a DynamoDB read never sees half of an
update, two conditional writes never both pass one condition, and concurrent PUTs of one S3 key
each keep their version; and a client that stalls while sending a body holds up no one else.

moto applies an UpdateItem to the stored item in place, one action after another, and checks a
condition before it writes without holding anything; its PutObject reads a key's versions and
stores them again with its own added; the emulator's server runs requests on threads. The first
three tests fail on moto's app served without `atomicity`.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from provisioner.emulator.atomicity import Lane, lanes
from provisioner.emulator.gate import read_body
from provisioner.emulator.server import EmulatorServer
from tests.emulator.conftest import REGION

pytestmark = pytest.mark.slow

TABLE = "atomicity"
FIELDS = 80  # attributes one update sets: a wide window for a read in the middle of it
PADDING = 40  # attributes a compare-and-set sets before its counter: a window after its check
WRITERS, PUTS = 16, 100  # concurrent PUTs of one key: moto alone lost ~10 % of their versions


@pytest.fixture
def dynamodb(emulator: EmulatorServer) -> Any:
    client = boto3.client("dynamodb", endpoint_url=emulator.endpoint_url, region_name=REGION)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def _together(workers: list[Callable[[], None]]) -> None:
    """Run every worker on its own thread, started at once; re-raise the first failure."""
    barrier = threading.Barrier(len(workers))
    failures: list[BaseException] = []

    def run(worker: Callable[[], None]) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[0]


def test_a_read_never_sees_half_an_update(dynamodb: Any) -> None:
    names = {f"#f{i}": f"f{i}" for i in range(FIELDS)}
    expression = "SET " + ", ".join(f"#f{i} = :n" for i in range(FIELDS))
    dynamodb.put_item(
        TableName=TABLE, Item={"id": {"S": "x"}, **{n: {"N": "0"} for n in names.values()}}
    )
    writing = threading.Event()
    torn: list[set[str]] = []

    def write() -> None:
        try:
            for n in range(1, 100):
                dynamodb.update_item(
                    TableName=TABLE,
                    Key={"id": {"S": "x"}},
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":n": {"N": str(n)}},
                )
        finally:
            writing.set()

    def read() -> None:
        while not writing.is_set():
            item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "x"}})["Item"]
            values = {item[name]["N"] for name in names.values()}
            if len(values) > 1:
                torn.append(values)

    _together([write, read, read])
    assert torn == []


def test_two_conditional_writes_never_both_pass_one_condition(dynamodb: Any) -> None:
    """Compare-and-set counting: every increment that was told it succeeded is in the total.
    Each write sets PADDING other attributes before `n`."""
    dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "n"}, "n": {"N": "0"}})
    padding = "".join(f"f{i} = :next, " for i in range(PADDING))
    succeeded = [0, 0, 0]

    def count(worker: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(100):
                seen = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "n"}})["Item"]["n"]["N"]
                try:
                    dynamodb.update_item(
                        TableName=TABLE,
                        Key={"id": {"S": "n"}},
                        UpdateExpression=f"SET {padding}n = :next",
                        ConditionExpression="n = :seen",
                        ExpressionAttributeValues={
                            ":seen": {"N": seen},
                            ":next": {"N": str(int(seen) + 1)},
                        },
                    )
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    pass  # another worker moved `n` on first: read it again
                else:
                    succeeded[worker] += 1

        return run

    _together([count(worker) for worker in range(3)])
    total = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "n"}})["Item"]["n"]["N"]
    assert int(total) == sum(succeeded)


def test_concurrent_puts_of_one_key_each_keep_their_version(emulator: EmulatorServer) -> None:
    s3 = boto3.client("s3", endpoint_url=emulator.endpoint_url, region_name=REGION)
    s3.create_bucket(Bucket="versions")
    s3.put_bucket_versioning(Bucket="versions", VersioningConfiguration={"Status": "Enabled"})
    acknowledged: list[str] = []

    def put() -> None:
        client = boto3.client("s3", endpoint_url=emulator.endpoint_url, region_name=REGION)
        for n in range(PUTS):
            answer = client.put_object(Bucket="versions", Key="trades.csv", Body=str(n).encode())
            acknowledged.append(answer["VersionId"])

    _together([put] * WRITERS)
    kept = [
        version["VersionId"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket="versions")
        for version in page.get("Versions", [])
    ]
    assert len(acknowledged) == WRITERS * PUTS
    assert sorted(kept) == sorted(acknowledged)


def test_a_client_stalled_mid_body_holds_up_no_other_request(emulator: EmulatorServer) -> None:
    """Headers and half a body on the published listener, then silence: DynamoDB still answers
    others at once and a snapshot's pause still finds no request under way."""
    body = b'{"TableName": "stalled"}'
    head = (
        "POST / HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{emulator.port}\r\n"
        "X-Amz-Target: DynamoDB_20120810.DescribeTable\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    quick = Config(read_timeout=5, retries={"max_attempts": 1})
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=emulator.internal_endpoint_url, region_name=REGION, config=quick
    )
    with socket.create_connection(("127.0.0.1", emulator.port)) as stalled:
        stalled.sendall(head + body)  # the other 100 bytes never come
        time.sleep(0.3)  # the server has the request and waits for the rest of its body
        started = time.monotonic()
        assert dynamodb.list_tables()["TableNames"] == []
        assert time.monotonic() - started < 2
        with emulator.gate.paused(timeout_s=2):
            pass


@pytest.mark.parametrize(
    ("environ", "body"),
    [
        ({"CONTENT_LENGTH": "5"}, b"12345"),  # exactly the declared length, never more
        ({"CONTENT_LENGTH": ""}, b""),
        ({}, b""),  # no length and no end: WSGI says read nothing
        ({"wsgi.input_terminated": True}, b"1234567890"),  # chunked: read to the end
    ],
)
def test_read_body_reads_what_wsgi_says_is_the_body(environ: dict[str, Any], body: bytes) -> None:
    stream = io.BytesIO(b"1234567890")
    request: dict[str, Any] = {**environ, "wsgi.input": stream}
    read_body(request)
    assert request["wsgi.input"].read() == body
    assert request["CONTENT_LENGTH"] == str(len(body))
    read_body(request)  # once per request: a second call reads nothing more from the client
    assert stream.tell() == (len(body) if environ else 0)


_SIGNED_S3 = "AWS4-HMAC-SHA256 Credential=testing/20261203/us-east-1/s3/aws4_request, Signed"
_SIGNED_SQS = "AWS4-HMAC-SHA256 Credential=testing/20261203/us-east-1/sqs/aws4_request, Signed"
_PRESIGNED_S3 = "X-Amz-Credential=key%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=1"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.UpdateItem"}, (Lane.TABLES,)),
        ({"HTTP_X_AMZ_TARGET": "DynamoDBStreams_20120810.GetRecords"}, (Lane.TABLES,)),
        ({"PATH_INFO": "/moto-api/reset"}, (Lane.OBJECTS, Lane.TABLES)),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage", "HTTP_AUTHORIZATION": _SIGNED_SQS}, ()),
        ({"REQUEST_METHOD": "POST", "HTTP_AUTHORIZATION": _SIGNED_SQS}, ()),
        ({"REQUEST_METHOD": "PUT", "HTTP_AUTHORIZATION": _SIGNED_S3}, (Lane.OBJECTS,)),
        ({"REQUEST_METHOD": "POST", "HTTP_AUTHORIZATION": _SIGNED_S3}, (Lane.OBJECTS,)),
        ({"REQUEST_METHOD": "DELETE", "HTTP_AUTHORIZATION": _SIGNED_S3}, (Lane.OBJECTS,)),
        ({"REQUEST_METHOD": "PUT", "QUERY_STRING": _PRESIGNED_S3}, (Lane.OBJECTS,)),
        ({"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": _SIGNED_S3}, ()),
        ({"REQUEST_METHOD": "GET", "QUERY_STRING": _PRESIGNED_S3}, ()),
        ({"REQUEST_METHOD": "PUT", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 garbled"}, ()),
        ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key"}, ()),  # unsigned: not S3's
    ],
)
def test_what_runs_in_which_lane(environ: dict[str, Any], expected: tuple[Lane, ...]) -> None:
    assert lanes(environ) == expected
