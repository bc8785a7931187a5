"""Fixtures for the handler tests: fake AWS in-process (moto), resources, events, context."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Logger
from moto import mock_aws

from handlers.core import runtime
from handlers.core.ids import file_id
from provisioner.emulator.apply import table_create_args
from stacks.config import PipelineConfig
from stacks.spec import FUNCTIONS, STATUS_TABLE, FunctionName, function_environment, names

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "eu-west-1"
BUCKET = "p-acme-dev-0a1b2c3d"
TABLE = "p-acme-dev-status"
ACCOUNT = "123456789012"  # moto's default account
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:p-acme-dev-pipeline"
PASS_MACHINE = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def load_event(name: str) -> dict[str, Any]:
    """A JSON event from tests/events/ (a fresh copy each time)."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return copy.deepcopy(data)


@dataclass
class LambdaContext:
    """What Lambda passes as `context`; Powertools' logger reads these attributes."""

    function_name: str = "p-acme-dev-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:p-acme-dev-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture
def log_lines() -> Iterator[Callable[[Logger], list[dict[str, Any]]]]:
    """Read what a handler's Powertools logger printed, as parsed JSON lines.

    The logger's stream handler keeps the stdout of import time, so capsys cannot see it: the
    stream is swapped for a buffer while the test runs.
    """
    swapped: list[tuple[Logger, io.StringIO, Any]] = []

    def read(logger: Logger) -> list[dict[str, Any]]:
        for known, buffer, _ in swapped:
            if known is logger:
                return [json.loads(line) for line in buffer.getvalue().splitlines() if line]
        buffer = io.StringIO()
        previous = logger.registered_handler.setStream(buffer)  # type: ignore[attr-defined]
        swapped.append((logger, buffer, previous))
        return []

    yield read
    for logger, _, previous in swapped:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, no real endpoint, every AWS call served by moto."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    runtime.reset_clients()
    with mock_aws():
        yield
    runtime.reset_clients()


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, str]]:
    """Give the process exactly one function's environment (stacks.spec), as Lambda would:
    every other function's variables are removed, so a handler cannot read them by accident."""
    config = PipelineConfig(tenant="acme", environment="dev", region=REGION)
    pipeline_names = names(config, ACCOUNT)
    assert pipeline_names.status_table == TABLE

    def use(function: FunctionName, **overrides: str) -> dict[str, str]:
        for other in FUNCTIONS:
            for key in function_environment(other, config, pipeline_names, STATE_MACHINE_ARN):
                monkeypatch.delenv(key, raising=False)
        env = function_environment(function, config, pipeline_names, STATE_MACHINE_ARN)
        env.update(overrides)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    return use


@pytest.fixture
def bucket(aws: None) -> str:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def status_table(aws: None) -> str:
    """The status table exactly as the stack creates it (stacks.spec)."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=TABLE, **table_create_args(STATUS_TABLE)
    )
    return TABLE


@pytest.fixture
def state_machine(aws: None) -> str:
    """A trivial Pass machine: the ingest tests only care that executions start."""
    arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name="p-acme-dev-pipeline",
        definition=json.dumps(PASS_MACHINE),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/p-acme-dev-sfn-role",
    )["stateMachineArn"]
    assert arn == STATE_MACHINE_ARN
    return arn


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    version_id: str

    @property
    def file_id(self) -> str:
        return file_id(self.bucket, self.key, self.version_id)

    def stage_event(self, **extra: Any) -> dict[str, Any]:
        """The validator's payload as the state machine builds it, plus later stages' parts."""
        event = load_event("stage_payload.json")
        event.update(
            fileId=self.file_id, bucket=self.bucket, objectKey=self.key, versionId=self.version_id
        )
        event.update(extra)
        return event


@pytest.fixture
def upload(bucket: str) -> Callable[[str, bytes], Uploaded]:
    """Put an object under incoming/ and return its version."""

    def put(key: str, body: bytes) -> Uploaded:
        response = boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=key, Body=body
        )
        return Uploaded(bucket, key, response["VersionId"])

    return put
