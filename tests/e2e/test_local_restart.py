"""Restarting the service with the local engine: READY environments come back from the
emulator's snapshot with their objects (every version), status items and results, and nothing
is processed twice; after a SIGKILL every write acknowledged to a client is there; an unusable
snapshot falls back to re-creating them empty."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import boto3

from handlers.core.ids import file_id
from provisioner.emulator.snapshot import taken_at
from tests.e2e.service import RunningService, running_service, service_process
from tests.e2e.trades import ROWS, trades_csv

SNAPSHOT = Path("emulator") / "snapshot.bin"


def _client(service: str, environment: dict[str, Any]) -> Any:
    return boto3.client(
        service,
        endpoint_url=environment["awsEndpointUrl"],
        region_name=environment["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _versions(environment: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every object version in the bucket: (key, version id, ETag)."""
    s3 = _client("s3", environment)
    listed = s3.list_object_versions(Bucket=environment["outputs"]["bucketName"])
    return sorted((v["Key"], v["VersionId"], v["ETag"]) for v in listed.get("Versions", []))


def _executions(environment: dict[str, Any]) -> list[tuple[str, str]]:
    sfn = _client("stepfunctions", environment)
    listed = sfn.list_executions(stateMachineArn=environment["outputs"]["stateMachineArn"])
    return sorted((e["name"], e["status"]) for e in listed["executions"])


def _result(environment: dict[str, Any], key: str) -> bytes:
    s3 = _client("s3", environment)
    body: bytes = s3.get_object(Bucket=environment["outputs"]["bucketName"], Key=key)["Body"].read()
    return body


def _files(service: RunningService, name: str) -> dict[str, dict[str, Any]]:
    listing = service.client.get(f"/environments/acme/{name}/files?limit=100").json()
    return {item["fileId"]: item for item in listing["items"]}


def test_sigterm_restart_keeps_objects_statuses_and_results(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_service(data) as first:
        environment = first.create("acme", "keep")
        uploads = [
            first.upload(environment, "incoming/a.csv", trades_csv()),
            first.upload(environment, "incoming/a.csv", trades_csv(ROWS[:4])),  # a 2nd version
            first.upload(environment, "incoming/b.csv", trades_csv(ROWS[:3])),
        ]
        done = {i: first.wait_for_file("acme", "keep", i) for i in uploads}
        assert {item["status"] for item in done.values()} == {"COMPLETED"}
        versions = _versions(environment)
        executions = _executions(environment)
        results = {i: _result(environment, item["resultKey"]) for i, item in done.items()}
        files = _files(first, "keep")
    assert len(executions) == 3
    assert {status for _, status in executions} == {"SUCCEEDED"}
    snapshot = data / SNAPSHOT
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert stat.S_IMODE(snapshot.parent.stat().st_mode) == 0o700

    with running_service(data) as second:
        current = second.client.get("/environments/acme/keep").json()
        # Restored, not re-created: READY at once, its last operation still the user's create.
        assert current["state"] == "READY"
        assert current["lastOperation"]["requestedBy"] != "system"
        assert _versions(current) == versions
        assert _files(second, "keep") == files
        for file_id, item in done.items():
            assert second.client.get(f"/environments/acme/keep/files/{file_id}").json() == item
            assert _result(current, item["resultKey"]) == results[file_id]
        assert all(item["attempt"] == 1 for item in _files(second, "keep").values())
        # A new upload is processed. The ingest queue is FIFO with one message group, so an
        # old message delivered again would have come first: the executions show it did not.
        fresh = second.upload(current, "incoming/c.csv", trades_csv())
        assert second.wait_for_file("acme", "keep", fresh)["status"] == "COMPLETED"
        after = _executions(current)
        assert len(after) == 4
        assert {status for _, status in after} == {"SUCCEEDED"}
        assert set(executions) < set(after)


def test_work_in_flight_at_sigterm_finishes_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_service(data) as first:
        environment = first.create("acme", "busy")
        # Stopped right after the uploads: some are queued, some executing, when it stops.
        uploads = [
            first.upload(environment, f"incoming/f{n}.csv", trades_csv(ROWS[: 2 + n]))
            for n in range(4)
        ]
    with running_service(data) as second:
        current = second.client.get("/environments/acme/busy").json()
        assert current["state"] == "READY"
        for file_id in uploads:
            item = second.wait_for_file("acme", "busy", file_id)
            assert item["status"] == "COMPLETED"
            assert item["attempt"] == 1
        executions = _executions(current)
        assert sorted(name for name, _ in executions) == sorted(uploads)
        assert {status for _, status in executions} == {"SUCCEEDED"}


def test_unusable_snapshot_falls_back_to_recreating(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_service(data) as first:
        environment = first.create("acme", "keep")
        identifier = first.upload(environment, "incoming/a.csv", trades_csv())
        assert first.wait_for_file("acme", "keep", identifier)["status"] == "COMPLETED"
    snapshot = data / SNAPSHOT
    damaged = bytearray(snapshot.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(damaged))
    with running_service(data) as second:
        # Nothing claims READY before it exists again: it is being re-created.
        current = second.client.get("/environments/acme/keep").json()
        assert current["state"] in ("PROVISIONING", "READY")
        assert current["lastOperation"]["requestedBy"] == "system"
        second.wait(current["lastOperation"]["id"])
        recreated = second.client.get("/environments/acme/keep").json()
        assert recreated["state"] == "READY"
        events = second.client.get(f"/operations/{current['lastOperation']['id']}/events")
        assert "does not match its checksum" in events.text
        assert second.client.get("/environments/acme/keep/files").json()["total"] == 0
        fresh = second.upload(recreated, "incoming/b.csv", trades_csv())
        assert second.wait_for_file("acme", "keep", fresh)["status"] == "COMPLETED"


def test_sigkill_keeps_what_the_last_snapshot_holds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with service_process(data) as (server, first):
        environment = first.create("acme", "keep")
        identifier = first.upload(environment, "incoming/a.csv", trades_csv())
        done = first.wait_for_file("acme", "keep", identifier)
        assert done["status"] == "COMPLETED"
        acknowledged = time.time()
        # A change after it, so that a snapshot is certainly taken after `acknowledged`.
        first.upload(environment, "notes/marker.txt", b"x")
        deadline = time.monotonic() + 60
        while (taken_at(data / SNAPSHOT) or 0.0) <= acknowledged:
            assert time.monotonic() < deadline, "no snapshot after the file completed"
            time.sleep(0.1)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    with service_process(data) as (_, second):
        current = second.client.get("/environments/acme/keep").json()
        assert current["state"] == "READY"
        assert current["lastOperation"]["requestedBy"] != "system"
        assert second.client.get(f"/environments/acme/keep/files/{identifier}").json() == done
        assert _result(current, done["resultKey"])
        assert _executions(current) == [(identifier, "SUCCEEDED")]
        fresh = second.upload(current, "incoming/b.csv", trades_csv(ROWS[:2]))
        assert second.wait_for_file("acme", "keep", fresh)["status"] == "COMPLETED"
        assert sorted(name for name, _ in _executions(current)) == sorted([identifier, fresh])


def test_sigkill_right_after_the_acknowledgements_loses_none_of_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with service_process(data) as (server, first):
        environment = first.create("acme", "acks")
        bucket = environment["outputs"]["bucketName"]
        s3 = first.s3(environment)
        done_id = first.upload(environment, "incoming/a.csv", trades_csv())
        done = first.wait_for_file("acme", "acks", done_id)
        assert done["status"] == "COMPLETED"
        bad = first.upload(environment, "incoming/bad.csv", b"wrong,header\n1,2\n")
        assert first.wait_for_file("acme", "acks", bad)["status"] == "FAILED"
        late = first.dead_letter(environment, "staging/late.csv", trades_csv(ROWS[:3]))

        # Acknowledged by the files API, then by the published endpoint; killed at once.
        retried = first.client.post(f"/environments/acme/acks/files/{bad}/retry")
        assert retried.status_code == 202, retried.text
        assert first.client.post("/environments/acme/acks/dlq/ingest/redrive").json() == {
            "moved": 1
        }
        acknowledged = {}
        for rows in (2, 3, 4):  # three versions of one key
            put = s3.put_object(Bucket=bucket, Key="incoming/b.csv", Body=trades_csv(ROWS[:rows]))
            acknowledged[("incoming/b.csv", put["VersionId"])] = trades_csv(ROWS[:rows])
        note = os.urandom(256 * 1024)  # large: kept beside the snapshot, not in it
        put = s3.put_object(Bucket=bucket, Key="notes/n.bin", Body=note)
        acknowledged[("notes/n.bin", put["VersionId"])] = note
        server.send_signal(signal.SIGKILL)
        server.wait(10)

    with service_process(data) as (_, second):
        current = second.client.get("/environments/acme/acks").json()
        assert current["state"] == "READY"
        assert current["lastOperation"]["requestedBy"] != "system"
        restored = second.s3(current)
        for (key, version), body in acknowledged.items():
            got = restored.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
            assert got == body
        for key, version in acknowledged:
            if key.startswith("incoming/"):
                item = second.wait_for_file("acme", "acks", file_id(bucket, key, version), 120)
                assert item["status"] == "COMPLETED"
        assert second.wait_for_file("acme", "acks", late, 120)["status"] == "COMPLETED"
        again = second.wait_for_file("acme", "acks", bad, 120)
        assert (again["status"], again["attempt"] >= 2) == ("FAILED", True)
        # What had completed before the kill is as it was, and ran once.
        assert second.client.get(f"/environments/acme/acks/files/{done_id}").json() == done
        ran = [(name, status) for name, status in _executions(current) if done_id in name]
        assert ran == [(done_id, "SUCCEEDED")]
