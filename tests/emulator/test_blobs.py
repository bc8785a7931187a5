"""A snapshot's large payloads beside it: restored identical (every version), written once,
removed when no snapshot needs them, and a missing or corrupt one refuses the whole snapshot."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
import zipfile
from pathlib import Path

import pytest
from moto.core.base_backend import BackendDict

from provisioner.emulator import snapshot
from provisioner.emulator.apply import AwsClients
from provisioner.emulator.blobs import MIN_BLOB_BYTES, BlobStore
from provisioner.emulator.snapshot import SnapshotError

BUCKET = "blob-bucket"
TRUST = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
    '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
)


def _code() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        # Incompressible: the archive itself is larger than MIN_BLOB_BYTES.
        zipped.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        zipped.writestr("data.bin", os.urandom(4 * MIN_BLOB_BYTES))
    return archive.getvalue()


def _fill(clients: AwsClients) -> dict[str, bytes]:
    """A versioned bucket (large, small and repeated bodies) and a function; returns the bodies
    by version id."""
    s3 = clients.s3
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    large = os.urandom(3 * MIN_BLOB_BYTES)
    bodies = [large, os.urandom(5 * MIN_BLOB_BYTES), b"small", large]
    versions = {}
    for body in bodies:
        versions[s3.put_object(Bucket=BUCKET, Key="k", Body=body)["VersionId"]] = body
    role = clients.iam.create_role(RoleName="fn", AssumeRolePolicyDocument=TRUST)["Role"]
    clients.lambda_.create_function(
        FunctionName="fn",
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": _code()},
    )
    return versions


def _restored_bodies(clients: AwsClients) -> dict[str, bytes]:
    s3 = clients.s3
    listed = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    return {
        v["VersionId"]: s3.get_object(Bucket=BUCKET, Key="k", VersionId=v["VersionId"])[
            "Body"
        ].read()
        for v in listed
    }


def test_payloads_leave_the_pickle_and_come_back_identical(
    clients: AwsClients, tmp_path: Path
) -> None:
    versions = _fill(clients)
    code_sha = clients.lambda_.get_function(FunctionName="fn")["Configuration"]["CodeSha256"]
    blobs = BlobStore(tmp_path / "blobs")
    taken = snapshot.capture(blobs)
    written = blobs.write_pending()

    large = [body for body in versions.values() if len(body) >= MIN_BLOB_BYTES]
    # The pickle holds references, not the bodies; the repeated body is one file.
    assert len(taken) < sum(len(body) for body in large)
    files = sorted(p.name for p in (tmp_path / "blobs").iterdir())
    assert len(files) >= 3  # the two distinct large bodies and the function's archive
    for body in large:
        assert hashlib.sha256(body).hexdigest() in files
    assert written >= sum(len(body) for body in set(large))
    assert all(stat.S_IMODE((tmp_path / "blobs" / f).stat().st_mode) == 0o600 for f in files)

    BackendDict.reset()
    assert clients.s3.list_buckets()["Buckets"] == []
    snapshot.restore(taken, BlobStore(tmp_path / "blobs"))

    assert _restored_bodies(clients) == versions
    function = clients.lambda_.get_function(FunctionName="fn")["Configuration"]
    assert function["CodeSha256"] == code_sha


def test_a_later_snapshot_writes_only_new_payloads_and_drops_unused_ones(
    clients: AwsClients, tmp_path: Path
) -> None:
    versions = _fill(clients)
    blobs = BlobStore(tmp_path / "blobs")
    snapshot.capture(blobs)
    blobs.write_pending()
    assert blobs.collect() == 0
    before = {p.name for p in (tmp_path / "blobs").iterdir()}

    snapshot.capture(blobs)
    assert blobs.write_pending() == 0  # nothing new: nothing written, nothing hashed again

    newest = os.urandom(2 * MIN_BLOB_BYTES)
    clients.s3.put_object(Bucket=BUCKET, Key="other", Body=newest)
    unique = next(v for v, b in versions.items() if list(versions.values()).count(b) == 1)
    dropped = hashlib.sha256(versions[unique]).hexdigest()
    clients.s3.delete_object(Bucket=BUCKET, Key="k", VersionId=unique)
    snapshot.capture(blobs)
    assert blobs.write_pending() == len(newest)
    assert blobs.collect() == 1
    after = {p.name for p in (tmp_path / "blobs").iterdir()}
    assert after == (before - {dropped}) | {hashlib.sha256(newest).hexdigest()}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.unlink(), "is missing"),
        (lambda path: path.write_bytes(path.read_bytes()[:-1] + b"!"), "does not match"),
    ],
    ids=["missing", "corrupt"],
)
def test_a_missing_or_corrupt_payload_refuses_the_whole_snapshot(
    clients: AwsClients, tmp_path: Path, damage: object, reason: str
) -> None:
    versions = _fill(clients)
    blobs = BlobStore(tmp_path / "blobs")
    taken = snapshot.capture(blobs)
    blobs.write_pending()
    body = next(b for b in versions.values() if len(b) >= MIN_BLOB_BYTES)
    damage(tmp_path / "blobs" / hashlib.sha256(body).hexdigest())  # type: ignore[operator]

    BackendDict.reset()
    with pytest.raises(SnapshotError, match=reason):
        snapshot.restore(taken, BlobStore(tmp_path / "blobs"))
    # Nothing half-restored: not the bucket, not the function.
    assert clients.s3.list_buckets()["Buckets"] == []
    assert clients.lambda_.list_functions()["Functions"] == []


def test_a_finished_executions_history_is_pickled_once(clients: AwsClients, tmp_path: Path) -> None:
    sfn = clients.stepfunctions
    steps = 40  # a history well over MIN_BLOB_BYTES
    states = {
        f"S{n}": {"Type": "Pass", **({"Next": f"S{n + 1}"} if n < steps else {"End": True})}
        for n in range(steps + 1)
    }
    machine = sfn.create_state_machine(
        name="long",
        definition=json.dumps({"StartAt": "S0", "States": states}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="x")["executionArn"]
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=arn)["status"] != "SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    blobs = BlobStore(tmp_path / "blobs")
    snapshot.capture(blobs)
    assert blobs.write_pending() >= MIN_BLOB_BYTES  # the history, as a payload file
    taken = snapshot.capture(blobs)
    assert blobs.write_pending() == 0  # the second snapshot does not pickle it again

    BackendDict.reset()
    snapshot.restore(taken, BlobStore(tmp_path / "blobs"))
    restored = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert restored == history
    assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
