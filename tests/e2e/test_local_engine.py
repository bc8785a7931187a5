"""The product end to end with the local engine: environments created through the HTTP API,
files uploaded with ordinary S3 clients, processed by the real pipeline in the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from handlers.core.ids import file_id
from provisioner.engines.aws import DataPlaneAccess
from provisioner.files.canary import run_canary
from provisioner.files.service import EnvironmentDataPlane
from stacks.spec import STACK_OUTPUTS
from tests.e2e.service import RunningService
from tests.e2e.trades import ROWS, trades_csv, trades_csv_gz
from tests.factories import auth
from tests.handlers.reference import results_symbols


def _assert_results(
    service: RunningService, environment: dict[str, Any], item: dict[str, Any]
) -> None:
    result_key = item["resultKey"]
    assert result_key == f"results/{item['fileId']}.json"
    body = (
        service.s3(environment)
        .get_object(Bucket=environment["outputs"]["bucketName"], Key=result_key)["Body"]
        .read()
    )
    results = json.loads(body)
    assert set(results) == {"fileId", "objectKey", "rows", "rejectedRows", "symbols"}
    assert results["fileId"] == item["fileId"]
    assert results["objectKey"] == item["objectKey"]
    assert results["rows"] == len(ROWS) == item["rowCount"]
    assert results["rejectedRows"] == 0 == item["rejectedRows"]
    assert results["symbols"] == results_symbols(trades_csv().decode())


def test_create_gives_a_ready_environment_with_every_output(service: RunningService) -> None:
    environment = service.create("acme", "dev")
    assert environment["state"] == "READY"
    assert environment["engine"] == "local"
    assert set(environment["outputs"]) == set(STACK_OUTPUTS)
    assert environment["awsEndpointUrl"].startswith("http://127.0.0.1:")
    assert environment["outputs"]["apiEndpoint"] == f"{service.base_url}/local/acme/dev/prod"
    assert environment["outputs"]["bucketName"].startswith("p-acme-dev-")
    # The queues on the published endpoint (durable answers, a port that outlives a restart),
    # not on the internal listener the operation's worker used.
    queues = [value for name, value in environment["outputs"].items() if name.endswith("QueueUrl")]
    dlqs = [value for name, value in environment["outputs"].items() if name.endswith("DlqUrl")]
    assert len(queues) == 1
    assert len(dlqs) == 4
    assert all(url.startswith(environment["awsEndpointUrl"] + "/") for url in queues + dlqs)
    sqs = boto3.client(
        "sqs",
        endpoint_url=queues[0].rsplit("/", 2)[0],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    assert sqs.get_queue_attributes(QueueUrl=queues[0], AttributeNames=["QueueArn"])["Attributes"]
    ready = service.client.get("/readyz").json()
    assert ready["checks"]["engine"]["ok"] is True
    assert "AWS emulator" in ready["checks"]["engine"]["detail"]


def test_files_are_processed_as_the_design_says(service: RunningService) -> None:
    environment = service.create("acme", "files")
    good = service.upload(environment, "incoming/trades 2026+11 é.csv", trades_csv())
    gzipped = service.upload(environment, "incoming/trades.csv.gz", trades_csv_gz())
    bad = service.upload(environment, "incoming/bad.csv", b"time,sym,px,qty\n1,2,3,4\n")
    for identifier in (good, gzipped):
        item = service.wait_for_file("acme", "files", identifier)
        assert item["status"] == "COMPLETED", item
        assert item["symbolCount"] == 3
        _assert_results(service, environment, item)
    failed = service.wait_for_file("acme", "files", bad)
    assert failed["status"] == "FAILED"
    assert failed["error"]["stage"] == "validator"
    assert failed["error"]["type"] == "InvalidFileError"
    assert "header" in failed["error"]["message"]
    # The same file through the environment's own status API (what API Gateway serves on AWS).
    api = environment["outputs"]["apiEndpoint"]
    by_id = httpx.get(f"{api}/status/{good}", headers=auth())
    assert by_id.status_code == 200
    assert by_id.json()["status"] == "COMPLETED"
    assert by_id.json()["objectKey"] == "incoming/trades 2026+11 é.csv"
    by_key = httpx.get(
        f"{api}/files", params={"key": "incoming/trades 2026+11 é.csv"}, headers=auth()
    )
    assert [f["fileId"] for f in by_key.json()["files"]] == [good]
    assert httpx.get(f"{api}/status/{'0' * 64}", headers=auth()).status_code == 404
    assert httpx.get(f"{api}/status/nope", headers=auth()).status_code == 400
    assert httpx.get(f"{api}/status/{good}").status_code == 401
    # The listing counts them all.
    listing = service.client.get("/environments/acme/files/files").json()
    assert listing["counts"] == {"COMPLETED": 2, "FAILED": 1}
    assert {f["fileId"] for f in listing["items"]} == {good, gzipped, bad}
    failed_only = service.client.get("/environments/acme/files/files?status=FAILED").json()
    assert [f["fileId"] for f in failed_only["items"]] == [bad]
    # The bad file's stage DLQ holds its message.
    queues = {
        q["name"]: q for q in service.client.get("/environments/acme/files/dlq").json()["queues"]
    }
    assert queues["validator"]["depth"] == 1
    assert queues["validator"]["messages"][0]["fileId"] == bad
    assert "InvalidFileError" in queues["validator"]["messages"][0]["reason"]
    assert queues["ingest"]["depth"] == queues["processor"]["depth"] == 0


def test_duplicates_and_new_versions(service: RunningService) -> None:
    environment = service.create("acme", "dups")
    bucket = environment["outputs"]["bucketName"]
    s3 = service.s3(environment)
    first = s3.put_object(Bucket=bucket, Key="incoming/t.csv", Body=trades_csv())["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="incoming/t.csv", Body=trades_csv())["VersionId"]
    ids = [file_id(bucket, "incoming/t.csv", version) for version in (first, second)]
    assert ids[0] != ids[1]  # a new version of a key is a new file
    for identifier in ids:
        assert service.wait_for_file("acme", "dups", identifier)["status"] == "COMPLETED"
    versions = httpx.get(
        f"{environment['outputs']['apiEndpoint']}/files",
        params={"key": "incoming/t.csv"},
        headers=auth(),
    ).json()["files"]
    assert [f["fileId"] for f in versions] == [ids[1], ids[0]]  # newest first
    # A copy outside incoming/ is not picked up.
    s3.put_object(Bucket=bucket, Key="staging/t.csv", Body=trades_csv())
    time.sleep(1)
    assert service.client.get("/environments/acme/dups/files").json()["total"] == 2


def test_two_tenants_stay_isolated(service: RunningService) -> None:
    acme = service.create("acme", "iso")
    globex = service.create("globex", "iso")
    assert acme["outputs"]["bucketName"] != globex["outputs"]["bucketName"]
    identifier = service.upload(acme, "incoming/a.csv", trades_csv())
    assert service.wait_for_file("acme", "iso", identifier)["status"] == "COMPLETED"
    assert service.client.get("/environments/globex/iso/files").json()["total"] == 0
    assert service.client.get(f"/environments/globex/iso/files/{identifier}").status_code == 404
    api = globex["outputs"]["apiEndpoint"]
    assert httpx.get(f"{api}/status/{identifier}", headers=auth()).status_code == 404
    # A globex key cannot see or touch acme's data plane at all: it answers like nothing.
    key = service.client.post("/admin/api-keys", json={"scope": "tenant:globex"}).json()["key"]
    for method, path in (
        ("GET", "/environments/acme/iso/files"),
        ("GET", f"/environments/acme/iso/files/{identifier}"),
        ("POST", f"/environments/acme/iso/files/{identifier}/retry"),
        ("GET", "/environments/acme/iso/dlq"),
        ("POST", "/environments/acme/iso/dlq/ingest/redrive"),
    ):
        response = httpx.request(method, f"{service.base_url}{path}", headers=auth(key))
        assert response.status_code == 404, (method, path, response.text)
    # …while its own environment's work for it.
    assert (
        httpx.get(f"{service.base_url}/environments/globex/iso/dlq", headers=auth(key)).status_code
        == 200
    )
    assert (
        httpx.get(f"{service.base_url}/environments/acme/iso/files", headers=auth(key)).status_code
        == 404
    )
    assert (
        httpx.get(
            f"{acme['outputs']['apiEndpoint']}/status/{identifier}", headers=auth(key)
        ).status_code
        == 404
    )


def test_update_takes_effect(service: RunningService) -> None:
    environment = service.create("acme", "upd")
    rows = [*ROWS] + [("not-a-time", "AAPL", "1", "1")] * 1  # 1 bad row in 7: 14%
    strict = service.upload(environment, "incoming/strict.csv", trades_csv(rows))
    assert service.wait_for_file("acme", "upd", strict)["status"] == "FAILED"
    response = service.client.patch(
        "/environments/acme/upd", json={"config": {"max_bad_row_ratio": 0.5}}
    )
    assert response.status_code == 202
    assert service.wait(response.json()["id"])["state"] == "SUCCEEDED"
    lenient = service.upload(environment, "incoming/lenient.csv", trades_csv(rows))
    item = service.wait_for_file("acme", "upd", lenient)
    assert item["status"] == "COMPLETED", item
    assert item["rejectedRows"] == 1
    assert item["rowCount"] == len(ROWS)


def test_retry_and_redrive(service: RunningService) -> None:
    environment = service.create("acme", "ops")
    bad = service.upload(environment, "incoming/bad.csv", b"wrong,header\n1,2\n")
    good = service.upload(environment, "incoming/good.csv", trades_csv())
    assert service.wait_for_file("acme", "ops", bad)["status"] == "FAILED"
    assert service.wait_for_file("acme", "ops", good)["status"] == "COMPLETED"
    # Only a FAILED file can be retried.
    conflict = service.client.post(f"/environments/acme/ops/files/{good}/retry")
    assert conflict.status_code == 409
    retried = service.client.post(f"/environments/acme/ops/files/{bad}/retry")
    assert retried.status_code == 202, retried.text
    # The answer is read once the retry is durable, by when the new attempt may have moved on
    # (its execution starts at once): any status of attempt 2.
    assert retried.json()["attempt"] == 2
    assert retried.json()["status"] in ("RECEIVED", "VALIDATING", "FAILED")
    assert retried.json()["lastError"]["stage"] == "validator"
    again = service.wait_for_file("acme", "ops", bad)
    assert again["status"] == "FAILED"  # the same object version is still bad
    assert again["attempt"] == 2
    assert service.client.post(f"/environments/acme/ops/files/{'f' * 64}/retry").status_code == 404
    # Redrive: an event in the ingest DLQ goes back to the ingest queue and is processed.
    late = service.dead_letter(environment, "staging/late.csv", trades_csv())
    queues = {
        q["name"]: q for q in service.client.get("/environments/acme/ops/dlq").json()["queues"]
    }
    assert queues["ingest"]["depth"] == 1
    assert queues["ingest"]["messages"][0]["fileId"] == late
    moved = service.client.post("/environments/acme/ops/dlq/ingest/redrive")
    assert moved.json() == {"moved": 1}
    assert service.wait_for_file("acme", "ops", late)["status"] == "COMPLETED"
    assert service.client.get("/environments/acme/ops/dlq").json()["queues"][0]["depth"] == 0


def test_destroy_leaves_nothing_and_the_name_can_be_reused(service: RunningService) -> None:
    environment = service.create("acme", "gone")
    service.upload(environment, "incoming/x.csv", trades_csv())
    response = service.client.delete("/environments/acme/gone")
    assert service.wait(response.json()["id"])["state"] == "SUCCEEDED"
    assert service.client.get("/environments/acme/gone").json()["state"] == "DESTROYED"
    endpoint = environment["awsEndpointUrl"]
    session = boto3.Session(
        aws_access_key_id="l", aws_secret_access_key="l", region_name="us-east-1"
    )
    prefix = "p-acme-gone-"
    assert not [
        b
        for b in session.client("s3", endpoint_url=endpoint).list_buckets()["Buckets"]
        if b["Name"].startswith(prefix)
    ]
    assert not [
        u
        for u in session.client("sqs", endpoint_url=endpoint).list_queues().get("QueueUrls", [])
        if prefix in u
    ]
    assert not [
        t
        for t in session.client("dynamodb", endpoint_url=endpoint).list_tables()["TableNames"]
        if t.startswith(prefix)
    ]
    assert not [
        f
        for f in session.client("lambda", endpoint_url=endpoint).list_functions()["Functions"]
        if f["FunctionName"].startswith(prefix)
    ]
    assert not [
        m
        for m in session.client("stepfunctions", endpoint_url=endpoint).list_state_machines()[
            "stateMachines"
        ]
        if m["name"].startswith(prefix)
    ]
    assert not [
        r
        for r in session.client("iam", endpoint_url=endpoint).list_roles()["Roles"]
        if r["RoleName"].startswith(prefix)
    ]
    assert not [
        r
        for r in session.client("events", endpoint_url=endpoint).list_rules()["Rules"]
        if r["Name"].startswith(prefix)
    ]
    assert not session.client("cloudwatch", endpoint_url=endpoint).describe_alarms(
        AlarmNamePrefix=prefix
    )["MetricAlarms"]
    assert not [
        t
        for t in session.client("sns", endpoint_url=endpoint).list_topics()["Topics"]
        if f":{prefix}" in t["TopicArn"]
    ]
    again = service.create("acme", "gone")
    assert again["state"] == "READY"
    identifier = service.upload(again, "incoming/y.csv", trades_csv())
    assert service.wait_for_file("acme", "gone", identifier)["status"] == "COMPLETED"


def test_the_aws_cli_uploads_like_a_newcomer_would(service: RunningService, tmp_path: Path) -> None:
    environment = service.create("acme", "cli")
    sample = tmp_path / "trades.csv"
    sample.write_bytes(trades_csv())
    bucket = environment["outputs"]["bucketName"]
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "awscli",
            "s3",
            "cp",
            str(sample),
            f"s3://{bucket}/incoming/trades.csv",
            "--endpoint-url",
            environment["awsEndpointUrl"],
        ],
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "upload:" in completed.stdout
    versions = service.s3(environment).list_object_versions(
        Bucket=bucket, Prefix="incoming/trades.csv"
    )
    identifier = file_id(bucket, "incoming/trades.csv", versions["Versions"][0]["VersionId"])
    assert service.wait_for_file("acme", "cli", identifier)["status"] == "COMPLETED"


def test_a_canary_completes_and_stays_out_of_listings_unless_asked(
    service: RunningService,
) -> None:
    environment = service.create("acme", "canary")
    ordinary = service.upload(environment, "incoming/trades.csv", trades_csv())
    access = DataPlaneAccess(
        boto3.Session(aws_access_key_id="l", aws_secret_access_key="l", region_name="us-east-1"),
        endpoint_url=environment["awsEndpointUrl"],
        raw_event_keys=True,
    )
    plane = EnvironmentDataPlane(access, environment["outputs"], status_ttl_days=30)
    canary = run_canary(plane, timeout_seconds=60)
    assert canary["status"] == "COMPLETED"
    assert service.wait_for_file("acme", "canary", ordinary)["status"] == "COMPLETED"
    listing = service.client.get("/environments/acme/canary/files").json()
    assert [f["fileId"] for f in listing["items"]] == [ordinary]
    assert (listing["counts"], listing["total"]) == ({"COMPLETED": 1}, 1)
    canaries = service.client.get("/environments/acme/canary/files?canary=true").json()
    assert [(f["fileId"], f["canary"]) for f in canaries["items"]] == [(canary["fileId"], True)]
    assert canaries["counts"] == {"COMPLETED": 1}
    one = service.client.get(f"/environments/acme/canary/files/{canary['fileId']}").json()
    assert (one["status"], one["canary"], one["rowCount"]) == ("COMPLETED", True, 3)
    assert "canary" not in service.client.get(f"/environments/acme/canary/files/{ordinary}").json()
    bad = service.client.get("/environments/acme/canary/files?canary=maybe")
    assert bad.status_code == 422
    assert "canary" in bad.text
    # The environment's own status API marks it too (it answers by id or key only).
    by_id = httpx.get(
        f"{environment['outputs']['apiEndpoint']}/status/{canary['fileId']}", headers=auth()
    )
    assert by_id.json()["canary"] is True
