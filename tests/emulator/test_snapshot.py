"""Snapshots of moto's backends: what a restore brings back, and what it refuses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import moto
import pytest
from moto.core.base_backend import BackendDict

from provisioner.emulator import snapshot
from provisioner.emulator.apply import AwsClients
from provisioner.emulator.blobs import BlobStore
from provisioner.emulator.snapshot import INTERRUPTED_ERROR, SnapshotError

BUCKET = "snapshot-bucket"


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _reset() -> None:
    """What a new process starts with: no emulated resource at all."""
    BackendDict.reset()


def test_round_trip_keeps_every_version_item_and_message(
    clients: AwsClients, blobs: BlobStore
) -> None:
    s3, dynamodb, sqs = clients.s3, clients.dynamodb, clients.sqs
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=BUCKET, Key="k", Body=b"one")["VersionId"]
    second = s3.put_object(Bucket=BUCKET, Key="k", Body=b"two")["VersionId"]
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="t", Item={"id": {"S": "a"}, "n": {"N": "1"}})
    queue = sqs.create_queue(
        QueueName="q.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hello", MessageGroupId="g")

    taken = snapshot.capture(blobs)
    _reset()
    assert s3.list_buckets()["Buckets"] == []
    assert snapshot.restore(taken, blobs) == []

    versions = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([first, second])
    assert s3.get_object(Bucket=BUCKET, Key="k", VersionId=first)["Body"].read() == b"one"
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"two"
    assert dynamodb.get_item(TableName="t", Key={"id": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    assert [m["Body"] for m in messages] == ["hello"]
    # Restored objects work as before: new writes, a new version.
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"three")
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 3


def test_a_running_execution_comes_back_failed_and_is_reported(
    clients: AwsClients, blobs: BlobStore
) -> None:
    sfn = clients.stepfunctions
    role = "arn:aws:iam::123456789012:role/r"
    waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
    done = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    slow = sfn.create_state_machine(name="slow", definition=json.dumps(waiting), roleArn=role)
    fast = sfn.create_state_machine(name="fast", definition=json.dumps(done), roleArn=role)
    running = sfn.start_execution(
        stateMachineArn=slow["stateMachineArn"], name="x", input='{"fileId": "f"}'
    )["executionArn"]
    finished = sfn.start_execution(stateMachineArn=fast["stateMachineArn"], name="y")
    _wait_for(lambda: sfn.describe_execution(executionArn=finished["executionArn"])["status"])

    taken = snapshot.capture(blobs)
    _reset()
    interrupted = snapshot.restore(taken, blobs)

    assert [(i.execution_arn, i.input) for i in interrupted] == [(running, {"fileId": "f"})]
    described = sfn.describe_execution(executionArn=running)
    assert (described["status"], described["error"]) == ("FAILED", INTERRUPTED_ERROR)
    assert sfn.describe_execution(executionArn=finished["executionArn"])["status"] == "SUCCEEDED"
    history = sfn.get_execution_history(executionArn=finished["executionArn"])["events"]
    assert history[0]["type"] == "ExecutionStarted"
    assert snapshot.running_executions() == 0


def _wait_for(status: object) -> None:
    import time

    deadline = time.monotonic() + 30
    while status() != "SUCCEEDED":  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _body(taken: bytes) -> tuple[dict[str, object], bytes]:
    header, _, payload = taken.partition(b"\n")
    return json.loads(header), payload


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda h, p: b"not a header\n" + p, "no readable header"),
        (lambda h, p: json.dumps({**h, "format": 99}).encode() + b"\n" + p, "format is not"),
        (lambda h, p: json.dumps({**h, "moto": "0.0"}).encode() + b"\n" + p, "moto 0.0"),
        (lambda h, p: json.dumps(h).encode() + b"\n" + p[: len(p) // 2], "checksum"),
    ],
    ids=["header", "format", "moto-version", "truncated"],
)
def test_an_unusable_snapshot_is_refused_whole(
    clients: AwsClients, blobs: BlobStore, damage: object, reason: str
) -> None:
    clients.s3.create_bucket(Bucket="kept")
    header, payload = _body(snapshot.capture(blobs))
    _reset()
    with pytest.raises(SnapshotError, match=reason):
        snapshot.restore(damage(header, payload), blobs)  # type: ignore[operator]
    assert clients.s3.list_buckets()["Buckets"] == []


def test_a_payload_that_does_not_unpickle_is_refused(clients: AwsClients, blobs: BlobStore) -> None:
    garbage = b"\x80\x05not a pickle"
    header = {
        "format": snapshot.SNAPSHOT_FORMAT,
        "moto": moto.__version__,
        "sha256": __import__("hashlib").sha256(garbage).hexdigest(),
    }
    with pytest.raises(SnapshotError, match="cannot be loaded"):
        snapshot.restore(json.dumps(header).encode() + b"\n" + garbage, blobs)


def test_the_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.bin"
    with pytest.raises(SnapshotError, match="there is no snapshot"):
        snapshot.read_file(path)
    snapshot.write_file(path, b"one")
    snapshot.write_file(path, b"two")
    assert snapshot.read_file(path) == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.bin"]


def test_a_message_in_flight_at_the_snapshot_is_received_again_at_once(
    clients: AwsClients, blobs: BlobStore
) -> None:
    sqs = clients.sqs
    queue = sqs.create_queue(
        QueueName="flight.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="taken", MessageGroupId="g")
    received = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=600, WaitTimeSeconds=0)
    assert [m["Body"] for m in received["Messages"]] == ["taken"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)

    taken = snapshot.capture(blobs)
    _reset()
    snapshot.restore(taken, blobs)

    # Its receiver is gone with the old process: it comes back now, not in ten minutes.
    again = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    assert [m["Body"] for m in again] == ["taken"]
