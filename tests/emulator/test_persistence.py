"""The emulator's state across a restart, in server mode: snapshots taken at the gate, an
execution running at the snapshot restored as interrupted (the local engine starts it again:
tests/provisioner/engines/local/test_recovery.py), durable acknowledgements."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core.base_backend import BackendDict

from provisioner.emulator import snapshot
from provisioner.emulator.blobs import MIN_BLOB_BYTES
from provisioner.emulator.persistence import SNAPSHOT_FILE, EmulatorPersistence
from provisioner.emulator.server import EmulatorServer
from tests.emulator.conftest import REGION

pytestmark = pytest.mark.slow

BUCKET = "held-bucket"


def _wait(condition: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@dataclass
class Durable:
    server: EmulatorServer
    persistence: EmulatorPersistence
    directory: Path

    def s3(self, endpoint: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


@pytest.fixture
def durable(aws_credentials: None, tmp_path: Path) -> Iterator[Durable]:
    """An emulator whose published listener answers writes once durable, as the host's does."""
    server = EmulatorServer(port=0)
    server.start()
    persistence = EmulatorPersistence(tmp_path / "emulator", server.gate, interval_s=0)
    server.publish(persistence.wait_durable)
    try:
        yield Durable(server, persistence, tmp_path / "emulator")
    finally:
        server.reset()
        server.stop()


class _HeldWrites:
    """Holds every snapshot's file write until released; counts them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.count = 0
        real = snapshot.write_file

        def held(path: Path, data: bytes) -> None:
            self.count += 1
            self.entered.set()
            assert self.release.wait(30)
            real(path, data)

        monkeypatch.setattr(snapshot, "write_file", held)


def test_an_external_write_is_answered_once_a_snapshot_holding_it_is_on_disk(
    durable: Durable, tmp_path: Path
) -> None:
    published = durable.s3(durable.server.endpoint_url)
    published.create_bucket(Bucket=BUCKET)
    published.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    bodies = [os.urandom(2 * MIN_BLOB_BYTES), b"second version"]
    versions = [published.put_object(Bucket=BUCKET, Key="k", Body=b)["VersionId"] for b in bodies]
    # What is on disk the instant the answers came back, as a SIGKILL would leave it.
    left = tmp_path / "left-behind"
    shutil.copytree(durable.directory, left)

    BackendDict.reset()
    assert EmulatorPersistence(left, durable.server.gate, interval_s=0).restore().restored
    internal = durable.s3(durable.server.internal_endpoint_url)
    for version, body in zip(versions, bodies, strict=True):
        got = internal.get_object(Bucket=BUCKET, Key="k", VersionId=version)["Body"].read()
        assert got == body


def test_internal_writes_are_not_held_and_external_ones_commit_as_a_group(
    durable: Durable, monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = durable.s3(durable.server.internal_endpoint_url)
    internal.create_bucket(Bucket=BUCKET)
    internal.put_object(Bucket=BUCKET, Key="internal", Body=b"x")
    assert not (durable.directory / SNAPSHOT_FILE).exists()  # no snapshot was waited for

    writes = _HeldWrites(monkeypatch)
    published = durable.s3(durable.server.endpoint_url)
    answered: list[str] = []

    def put(key: str) -> None:
        published.put_object(Bucket=BUCKET, Key=key, Body=b"y")
        answered.append(key)

    first = threading.Thread(target=put, args=("first",))
    first.start()
    assert writes.entered.wait(30)  # its snapshot is being written
    others = [threading.Thread(target=put, args=(f"k{n}",)) for n in range(6)]
    changes = durable.server.gate.changes
    for thread in others:
        thread.start()
    _wait(lambda: durable.server.gate.changes >= changes + len(others))
    # Held: none is answered while its snapshot is not on disk; internal writes go on.
    internal.put_object(Bucket=BUCKET, Key="meanwhile", Body=b"z")
    time.sleep(0.3)
    assert answered == []

    writes.release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert sorted(answered) == sorted(["first", *(f"k{n}" for n in range(6))])
    # One snapshot for the first, one more for every write that waited meanwhile.
    assert writes.count == 2


def test_a_write_that_cannot_be_made_durable_is_not_acknowledged(
    durable: Durable, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    internal = durable.s3(durable.server.internal_endpoint_url)
    internal.create_bucket(Bucket=BUCKET)
    monkeypatch.setattr(snapshot, "write_file", broken)
    with pytest.raises(ClientError) as raised:
        durable.s3(durable.server.endpoint_url).put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
    # Reads are answered as ever.
    assert durable.s3(durable.server.endpoint_url).list_buckets()["Buckets"]


def test_the_stop_takes_a_last_snapshot_only_when_something_changed(durable: Durable) -> None:
    internal = durable.s3(durable.server.internal_endpoint_url)
    internal.create_bucket(Bucket=BUCKET)
    assert durable.persistence.stop() is not None
    assert (durable.directory / SNAPSHOT_FILE).exists()
    assert durable.persistence.stop() is None  # the one on disk holds everything
    internal.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert durable.persistence.stop() is not None


def test_an_execution_that_ends_after_a_snapshot_is_saved_ended(durable: Durable) -> None:
    # Its end changes moto's state outside any request; the snapshot taken while it ran must
    # not be the last, or a restart reports a finished execution interrupted.
    sfn = boto3.client(
        "stepfunctions", endpoint_url=durable.server.internal_endpoint_url, region_name=REGION
    )
    waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}}
    machine = sfn.create_state_machine(
        name="short", definition=json.dumps(waiting), roleArn="arn:aws:iam::123456789012:role/r"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="x")["executionArn"]
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    assert durable.persistence.save() is not None  # holds it RUNNING
    _wait(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED")

    assert durable.persistence.stop() is not None
    BackendDict.reset()
    outcome = EmulatorPersistence(durable.directory, durable.server.gate, interval_s=0).restore()
    assert outcome.restored
    assert outcome.interrupted == []
    assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"


def _sqs(durable: Durable) -> Any:
    return boto3.client(
        "sqs", endpoint_url=durable.server.internal_endpoint_url, region_name=REGION
    )


def test_a_move_to_the_dead_letter_queue_falls_on_one_side_of_the_cut(
    durable: Durable, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = _sqs(durable)
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    redrive = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": "1"}
    source = sqs.create_queue(
        QueueName="source", Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    sqs.send_message(QueueUrl=source, MessageBody="poison")
    assert sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)["Messages"]
    durable.persistence.save()

    entered, release = threading.Event(), threading.Event()
    real = snapshot.capture

    def held(blobs: Any) -> bytes:
        entered.set()
        assert release.wait(30)
        return real(blobs)

    monkeypatch.setattr(snapshot, "capture", held)
    saving = threading.Thread(target=durable.persistence.save, kwargs={"force": True})
    saving.start()
    assert entered.wait(30)
    # The next receive moves the message to the DLQ: not while the capture runs.
    receiving = threading.Thread(target=sqs.receive_message, kwargs={"QueueUrl": source})
    receiving.start()
    time.sleep(0.3)
    assert receiving.is_alive()
    release.set()
    saving.join(30)
    receiving.join(30)
    monkeypatch.setattr(snapshot, "capture", real)

    assert durable.persistence.save() is not None  # the move counts as a change
    BackendDict.reset()
    assert EmulatorPersistence(durable.directory, durable.server.gate, interval_s=0).restore()
    counts = [
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        for url in (source, dlq)
    ]
    assert [c["Attributes"]["ApproximateNumberOfMessages"] for c in counts] == ["0", "1"]


def test_a_long_poll_does_not_hold_a_snapshot_up(durable: Durable) -> None:
    sqs = _sqs(durable)
    queue = sqs.create_queue(QueueName="idle")["QueueUrl"]
    received: list[Any] = []
    polling = threading.Thread(
        target=lambda: received.append(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10))
    )
    polling.start()
    time.sleep(0.3)  # waiting for messages
    started = time.monotonic()
    assert durable.persistence.save(force=True) is not None
    assert time.monotonic() - started < 2
    assert polling.is_alive()
    sqs.send_message(QueueUrl=queue, MessageBody="wake")
    polling.join(30)
    assert [m["Body"] for m in received[0]["Messages"]] == ["wake"]
