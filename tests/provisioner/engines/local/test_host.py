"""The local host's durability waits: what the service acknowledges through its own clients
(an upload through the files API, an operation's result) is in a snapshot on disk first; the
operations' workers reach the emulator on its internal listener, which is never held."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.core.base_backend import BackendDict

from provisioner.config import Settings
from provisioner.emulator import snapshot
from provisioner.emulator.gate import RequestGate
from provisioner.emulator.persistence import SNAPSHOT_FILE, EmulatorPersistence
from provisioner.engines.base import OperationKind, OperationRequest
from provisioner.engines.local.engine import emulator_url
from provisioner.engines.local.host import EMULATOR_STATE_DIR, LocalHost
from provisioner.errors import UnavailableError
from provisioner.files.service import EnvironmentDataPlane
from stacks.config import PipelineConfig
from tests.emulator.conftest import REGION, fake_aws_environment

pytestmark = pytest.mark.slow

BUCKET = "host-durability"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    fake_aws_environment(monkeypatch)
    return Settings(
        data_dir=tmp_path / "data",
        local_aws_port=0,
        local_snapshot_interval_s=0,  # only the waits take snapshots
        local_runtime_workers=1,
    )


@pytest.fixture
def host(settings: Settings) -> Iterator[LocalHost]:
    started = LocalHost(settings)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _restore_what_is_on_disk(settings: Settings, tmp_path: Path) -> None:
    """Restore what is on disk now, as a restart after a SIGKILL would find it."""
    left = tmp_path / "left-behind"
    shutil.copytree(settings.data_dir / EMULATOR_STATE_DIR, left)
    BackendDict.reset()
    unused_gate = RequestGate(lambda environ, start_response: [])
    assert EmulatorPersistence(left, unused_gate, interval_s=0).restore().restored


def test_an_operation_is_durable_before_it_is_recorded_succeeded(
    host: LocalHost, settings: Settings, tmp_path: Path
) -> None:
    worker = host.worker_settings(settings)
    assert emulator_url(worker) == host.internal_endpoint_url
    assert emulator_url(worker) != host.endpoint_url
    s3 = boto3.client("s3", endpoint_url=emulator_url(worker), region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)  # the operation's work: not held, not yet durable
    snapshot = settings.data_dir / EMULATOR_STATE_DIR / SNAPSHOT_FILE
    taken = snapshot.stat().st_mtime_ns if snapshot.exists() else None
    request = OperationRequest(
        "op-1", OperationKind.DESTROY, PipelineConfig(tenant="a", environment="b")
    )

    host.after_operation(request, False, {})  # a failed operation acknowledges nothing
    assert (snapshot.stat().st_mtime_ns if snapshot.exists() else None) == taken

    host.after_operation(request, True, {})
    _restore_what_is_on_disk(settings, tmp_path)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]


def test_an_upload_through_the_files_api_is_durable_when_answered(
    host: LocalHost, settings: Settings, tmp_path: Path
) -> None:
    access = host.data_plane("acme", REGION)
    access.client("s3").create_bucket(Bucket=BUCKET)
    access.client("s3").put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    plane = EnvironmentDataPlane(
        access, {"statusTableName": "t", "bucketName": BUCKET}, status_ttl_days=1
    )
    plane.upload("incoming/a.csv", b"one")
    plane.upload("incoming/a.csv", b"two")

    _restore_what_is_on_disk(settings, tmp_path)
    listed = access.client("s3").list_object_versions(Bucket=BUCKET)["Versions"]
    assert len(listed) == 2


def test_a_change_that_cannot_be_made_durable_is_not_acknowledged(
    host: LocalHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    access = host.data_plane("acme", REGION)
    access.client("s3").create_bucket(Bucket=BUCKET)
    access.client("s3").put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    monkeypatch.setattr(snapshot, "write_file", full_disk)
    plane = EnvironmentDataPlane(
        access, {"statusTableName": "t", "bucketName": BUCKET}, status_ttl_days=1
    )
    with pytest.raises(UnavailableError, match="could not make the change durable"):
        plane.upload("incoming/a.csv", b"one")
    config = PipelineConfig(tenant="acme", environment="dev")
    with pytest.raises(UnavailableError):
        host.after_operation(OperationRequest("op-2", OperationKind.DESTROY, config), True, {})
    host.stop()  # a last snapshot that fails does not keep the service from stopping
