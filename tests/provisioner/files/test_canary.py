"""Canary files on the whole data plane in moto (in-process): the applied spec, the real
handlers, the real state machine, an ingest poller; the canary sees only the data plane."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from handlers.core import runtime
from handlers.core.status_model import CANARY_PREFIX
from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.event_source import IngestPoller, lambda_invoker
from provisioner.emulator.lambda_dispatch import (
    DeployedFunction,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.lambda_runtime import pipeline_invokers
from provisioner.emulator.server import EMULATOR_CONFIG
from provisioner.engines.aws import DataPlaneAccess
from provisioner.files.canary import CanaryFailed, canary_csv, run_canary
from provisioner.files.service import EnvironmentDataPlane
from stacks.config import PipelineConfig
from stacks.resources import INCOMING_PREFIX
from stacks.state_machine import RetryPolicy
from tests.emulator.conftest import REGION, fake_aws_environment

pytestmark = pytest.mark.slow

RETRY = RetryPolicy(interval_s=1, max_attempts=2, backoff_rate=1.0, max_delay_s=1)
# Generous: two busy cores shared by several test runs.
TIMEOUT_S = 60.0


@dataclass
class Environment:
    plane: EnvironmentDataPlane
    outputs: dict[str, str]
    dispatcher: LambdaDispatcher
    poller: IngestPoller


@pytest.fixture
def environment() -> Iterator[Environment]:
    config = PipelineConfig(tenant="acme", environment="canary", region=REGION)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_environment(monkeypatch)
        runtime.reset_clients()
        with mock_aws(config=EMULATOR_CONFIG), LambdaDispatcher() as dispatcher:  # type: ignore[arg-type]
            clients = AwsClients.from_session(region=REGION)
            outputs = apply_pipeline(
                config, clients, api_endpoint="http://127.0.0.1:1/api", retry=RETRY
            )
            for function, invoker in pipeline_invokers(config).items():
                dispatcher.register(function, invoker)
            queue_url = outputs["ingestQueueUrl"]
            poller = IngestPoller(
                clients.sqs,
                queue_url,
                f"arn:aws:sqs:{REGION}:123456789012:{queue_url.rsplit('/', 1)[-1]}",
                lambda_invoker(clients.lambda_, outputs["ingestFunctionName"]),
            )
            poller.start()
            access = DataPlaneAccess(boto3.Session(region_name=REGION))
            plane = EnvironmentDataPlane(access, outputs, status_ttl_days=30)
            try:
                yield Environment(plane, outputs, dispatcher, poller)
            finally:
                poller.stop()
        runtime.reset_clients()


def test_the_canary_file_is_valid_market_data_under_the_canary_prefix() -> None:
    assert CANARY_PREFIX.startswith(INCOMING_PREFIX)  # the bucket rule sends it to ingest
    lines = canary_csv().decode().splitlines()
    assert lines[0] == "timestamp,symbol,price,size"
    assert len(lines) == 4


def test_a_canary_completes_and_is_marked_but_not_listed(environment: Environment) -> None:
    started = time.monotonic()
    item = run_canary(environment.plane, TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S
    assert item["status"] == "COMPLETED"
    assert item["canary"] is True
    assert item["objectKey"].startswith(CANARY_PREFIX)
    assert (item["rowCount"], item["rejectedRows"]) == (3, 0)
    assert environment.plane.file(item["fileId"])["canary"] is True
    # The ordinary listing and its counts leave canaries out; canary=True lists only them.
    ordinary = environment.plane.files(status=None, key=None, limit=50, offset=0)
    assert (ordinary.items, ordinary.counts, ordinary.total) == ([], {}, 0)
    canaries = environment.plane.files(status=None, key=None, limit=50, offset=0, canary=True)
    assert [f["fileId"] for f in canaries.items] == [item["fileId"]]
    assert canaries.counts == {"COMPLETED": 1}
    # A second canary is a file of its own.
    again = run_canary(environment.plane, TIMEOUT_S)
    assert again["fileId"] != item["fileId"]


def test_a_pipeline_that_fails_the_canary_names_the_stage_and_error(
    environment: Environment,
) -> None:
    def broken(_function: DeployedFunction, payload: bytes) -> InvocationResult:
        return InvocationResult.failure("ObjectNotFoundError", "the processor lost the object")

    environment.dispatcher.register(environment.outputs["processorFunctionName"], broken)
    with pytest.raises(CanaryFailed) as failed:
        run_canary(environment.plane, TIMEOUT_S)
    reason = failed.value.reason
    assert "FAILED at stage processor" in reason
    assert "ObjectNotFoundError: the processor lost the object" in reason
    assert failed.value.file_id is not None
    assert reason.startswith(f"canary {failed.value.file_id}:")
    assert environment.plane.file(failed.value.file_id)["status"] == "FAILED"


def test_a_canary_that_never_arrives_times_out_with_its_last_status(
    environment: Environment,
) -> None:
    environment.poller.stop()  # nothing takes the upload in
    started = time.monotonic()
    with pytest.raises(CanaryFailed) as failed:
        run_canary(environment.plane, 1.5)
    assert 1.5 <= time.monotonic() - started < 10
    assert "not COMPLETED within 1.5s, last status none" in failed.value.reason


def test_a_canary_stuck_in_a_stage_times_out_naming_it(environment: Environment) -> None:
    release = threading.Event()

    def slow(_function: DeployedFunction, payload: bytes) -> InvocationResult:
        release.wait(30)
        return InvocationResult.failure("ObjectNotFoundError", "too late")

    environment.dispatcher.register(environment.outputs["validatorFunctionName"], slow)
    try:
        with pytest.raises(CanaryFailed) as failed:
            run_canary(environment.plane, 8)
    finally:
        release.set()
    assert "not COMPLETED within 8s, last status VALIDATING at stage validator" in (
        failed.value.reason
    )


def test_a_cancel_stops_the_wait_promptly(environment: Environment) -> None:
    environment.poller.stop()
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(CanaryFailed) as failed:
        run_canary(environment.plane, TIMEOUT_S, cancel)
    assert time.monotonic() - started < 10
    assert "cancelled while the canary was none" in failed.value.reason


def test_an_upload_the_data_plane_refuses_fails_the_canary(environment: Environment) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    bucket = environment.outputs["bucketName"]
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    for version in versions:
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(CanaryFailed) as failed:
        run_canary(environment.plane, TIMEOUT_S)
    assert failed.value.reason == (
        "the canary could not be uploaded: the environment's AWS resources answered NoSuchBucket"
    )
    assert failed.value.file_id is None
