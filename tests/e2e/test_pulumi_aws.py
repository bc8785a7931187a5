"""The product against a real AWS account with the pulumi engine (marker `pulumi_cli`).

Needs the Pulumi CLI on PATH, AWS credentials, and PROVISIONER_TEST_AWS=1; the service's other
settings come from PROVISIONER_* variables as in production (passphrase, role…). It creates a
real environment, sends a file through the real pipeline, calls the status API with SigV4, and
destroys everything. It costs a few cents and takes several minutes.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from handlers.core.ids import file_id
from provisioner.config import Settings
from stacks.spec import STACK_OUTPUTS
from tests.e2e.service import running_service
from tests.e2e.trades import trades_csv

pytestmark = [
    pytest.mark.pulumi_cli,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("PROVISIONER_TEST_AWS") != "1" or shutil.which("pulumi") is None,
        reason="needs PROVISIONER_TEST_AWS=1, AWS credentials and the Pulumi CLI on PATH",
    ),
]


def _signed_get(url: str, region: str) -> httpx.Response:
    credentials = boto3.Session().get_credentials()
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return httpx.get(url, headers=dict(request.headers))


def test_environment_on_aws_end_to_end(tmp_path: Path) -> None:
    base = Settings()  # PROVISIONER_* from the environment
    name = f"t{uuid.uuid4().hex[:8]}"
    with running_service(
        tmp_path / "data",
        engine="pulumi",
        operation_timeout_s=3600,
        **{
            key: value
            for key, value in base.model_dump().items()
            if key.startswith(("pulumi_", "aws_")) and value is not None
        },
    ) as service:
        assert service.client.get("/readyz").json()["checks"]["engine"]["ok"] is True
        response = service.client.post("/environments", json={"tenant": "e2e", "name": name})
        assert response.status_code == 202
        try:
            created = service.wait(response.json()["id"], timeout=1800)
            assert created["state"] == "SUCCEEDED", created
            environment = service.client.get(f"/environments/e2e/{name}").json()
            assert set(environment["outputs"]) == set(STACK_OUTPUTS)
            bucket, region = environment["outputs"]["bucketName"], environment["region"]
            s3 = boto3.client("s3", region_name=region)
            key = "incoming/trades e2e.csv"
            version = s3.put_object(Bucket=bucket, Key=key, Body=trades_csv())["VersionId"]
            identifier = file_id(bucket, key, version)
            item = service.wait_for_file("e2e", name, identifier, timeout=600)
            assert item["status"] == "COMPLETED", item
            api = environment["outputs"]["apiEndpoint"]
            assert httpx.get(f"{api}/status/{identifier}").status_code == 403  # IAM only
            signed = _signed_get(f"{api}/status/{identifier}", region)
            assert signed.status_code == 200
            assert signed.json()["status"] == "COMPLETED"
        finally:
            destroy = service.client.delete(f"/environments/e2e/{name}")
            if destroy.status_code == 202:
                assert service.wait(destroy.json()["id"], timeout=1800)["state"] == "SUCCEEDED"
        time.sleep(1)
        assert service.client.get(f"/environments/e2e/{name}").json()["state"] == "DESTROYED"
