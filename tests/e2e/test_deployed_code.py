"""Local functions run the code deployed to them, not the service's own `handlers/`: two
environments on different code each run theirs on the shared runtime workers, and an update
brings an environment back to the service's code."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import boto3

from provisioner.emulator.apply import handlers_archive
from tests.e2e.service import RunningService
from tests.e2e.trades import trades_csv

# Appended to the service's own modules: the later definition wins, and a module the
# service's tree does not have shows that the modules came from this archive alone.
STATUS_V2 = """

def lambda_handler(event, context):
    import json, os
    from handlers import v2_marker
    body = {"deployed": v2_marker.VERSION, "tenant": os.environ["PIPELINE_TENANT"]}
    return {"statusCode": 200, "headers": {}, "body": json.dumps(body)}
"""
VALIDATOR_V2 = """

def lambda_handler(event, context):
    from handlers import v2_marker
    from handlers.core.errors import InvalidFileError
    raise InvalidFileError(f"rejected by the {v2_marker.VERSION} archive")
"""


def v2_archive() -> bytes:
    """The service's archive with a changed status and validator function."""
    source = zipfile.ZipFile(io.BytesIO(handlers_archive()))
    buffer = io.BytesIO()
    with source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            text = source.read(info).decode()
            if info.filename == "handlers/status_api.py":
                text += STATUS_V2
            elif info.filename == "handlers/validator.py":
                text += VALIDATOR_V2
            target.writestr(info, text)
        target.writestr("handlers/v2_marker.py", 'VERSION = "v2"\n')
    return buffer.getvalue()


def lambda_client(environment: dict[str, Any]) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=environment["awsEndpointUrl"],
        region_name=environment["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def status(service: RunningService, environment: dict[str, Any]) -> tuple[int, Any]:
    response = service.client.get(f"{environment['outputs']['apiEndpoint']}/status/{'0' * 64}")
    return response.status_code, response.json()


def test_each_environment_runs_the_code_deployed_to_it(service: RunningService) -> None:
    deployed = service.create("acme", "code")
    current = service.create("globex", "code")
    assert status(service, deployed)[0] == status(service, current)[0] == 404
    functions = lambda_client(deployed)
    for output in ("statusFunctionName", "validatorFunctionName"):
        functions.update_function_code(
            FunctionName=deployed["outputs"][output], ZipFile=v2_archive()
        )

    # Interleaved, on the same shared workers: each environment answers with its own code.
    for _ in range(3):
        assert status(service, deployed) == (200, {"deployed": "v2", "tenant": "acme"})
        assert status(service, current)[0] == 404
    # The pipeline's own invocations (Step Functions' Lambda tasks) run it too.
    rejected = service.upload(deployed, "incoming/a.csv", trades_csv())
    accepted = service.upload(current, "incoming/a.csv", trades_csv())
    item = service.wait_for_file("acme", "code", rejected)
    assert item["status"] == "FAILED", item
    assert item["error"]["message"] == "rejected by the v2 archive"
    assert service.wait_for_file("globex", "code", accepted)["status"] == "COMPLETED"

    # An update deploys the service's code again, and the environment runs that.
    response = service.client.patch("/environments/acme/code", json={"tags": {"Rev": "3"}})
    assert response.status_code == 202, response.text
    assert service.wait(response.json()["id"])["state"] == "SUCCEEDED"
    assert status(service, deployed)[0] == 404
    again = service.upload(deployed, "incoming/b.csv", trades_csv())
    assert service.wait_for_file("acme", "code", again)["status"] == "COMPLETED"
