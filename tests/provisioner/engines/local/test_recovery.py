"""Recovery after a restart: an execution the snapshot caught RUNNING is restored as
interrupted and started again once, as its file's next attempt (`engines.local.recovery`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto.core.base_backend import BackendDict

from handlers.core.ids import execution_name, file_id
from handlers.core.status_store import StatusStore
from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.lambda_dispatch import (
    DeployedFunction,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.persistence import EmulatorPersistence
from provisioner.emulator.server import EmulatorServer
from provisioner.emulator.snapshot import INTERRUPTED_ERROR, running_executions
from provisioner.engines.local.recovery import redrive_interrupted
from stacks import spec
from stacks.config import PipelineConfig
from tests.emulator.conftest import REGION, fake_aws_environment, published_emulator

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    fake_aws_environment(monkeypatch)
    with published_emulator() as server:
        yield server


@pytest.fixture
def dispatcher() -> Iterator[LambdaDispatcher]:
    with LambdaDispatcher() as installed:
        yield installed


def _wait(condition: Callable[[], object], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_an_interrupted_execution_is_started_again_once(
    emulator: EmulatorServer, dispatcher: LambdaDispatcher, tmp_path: Path
) -> None:
    config = PipelineConfig(tenant="acme", environment="dev")
    clients = AwsClients.for_endpoint(emulator.endpoint_url, region=REGION)
    outputs = apply_pipeline(config, clients, api_endpoint="http://127.0.0.1:1/api")
    names = spec.names(config, MOTO_ACCOUNT_ID)
    released = threading.Event()
    calls: list[str] = []

    def validator(function: DeployedFunction, payload: bytes) -> InvocationResult:
        calls.append(json.loads(payload)["fileId"])
        released.wait(60)
        return InvocationResult.failure("Stopped", "the test is over")

    dispatcher.register(names.functions["validator"], validator)
    bucket = outputs["bucketName"]
    version = clients.s3.put_object(Bucket=bucket, Key="incoming/a.csv", Body=b"x")["VersionId"]
    fid = file_id(bucket, "incoming/a.csv", version)
    store = StatusStore(outputs["statusTableName"], client=clients.dynamodb)
    store.record_received(fid, bucket=bucket, object_key="incoming/a.csv", version_id=version)
    first = {"fileId": fid, "bucket": bucket, "objectKey": "incoming/a.csv"}
    first |= {"versionId": version, "attempt": 1}
    clients.stepfunctions.start_execution(
        stateMachineArn=outputs["stateMachineArn"], name=fid, input=json.dumps(first)
    )
    _wait(lambda: calls)  # the execution is inside the validator: RUNNING
    persistence = EmulatorPersistence(tmp_path / "emulator", emulator.gate, interval_s=0)
    try:
        figures = persistence.save(force=True)
        assert figures is not None
        assert figures.size_bytes > 0

        BackendDict.reset()  # what a new process starts with
        outcome = persistence.restore()
        assert outcome.restored
        assert [i.execution_arn.rsplit(":", 1)[-1] for i in outcome.interrupted] == [fid]
        sfn = clients.stepfunctions
        old = sfn.describe_execution(executionArn=outcome.interrupted[0].execution_arn)
        assert (old["status"], old["error"]) == ("FAILED", INTERRUPTED_ERROR)

        assert redrive_interrupted(config, clients, outcome.interrupted) == 1
        item = store.get(fid)
        assert item is not None
        assert item["attempt"] == 2
        assert item["lastError"]["type"] == INTERRUPTED_ERROR
        _wait(lambda: len(calls) == 2)  # the new attempt reached the validator
        listed = sfn.list_executions(stateMachineArn=outputs["stateMachineArn"])["executions"]
        assert sorted((e["name"], e["status"]) for e in listed) == sorted(
            [(fid, "FAILED"), (execution_name(fid, 2), "RUNNING")]
        )
        # Once: the same interruption does not start a third attempt.
        assert redrive_interrupted(config, clients, outcome.interrupted) == 0
    finally:
        released.set()
        _wait(lambda: running_executions() == 0)
