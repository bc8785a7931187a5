"""Fixtures of the emulator tests: fake credentials, moto in-process, the emulator's server, the
Lambda dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

from provisioner.emulator.apply import AwsClients
from provisioner.emulator.lambda_dispatch import LambdaDispatcher
from provisioner.emulator.server import EMULATOR_CONFIG, EmulatorServer
from stacks.config import PipelineConfig

REGION = "us-east-1"


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; nothing inherited from the machine reaches AWS."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_environment(monkeypatch)


@pytest.fixture
def moto_aws(aws_credentials: None) -> Iterator[None]:
    """moto in-process, with Step Functions executing and the no-Docker Lambda backend."""
    with mock_aws(config=EMULATOR_CONFIG):  # type: ignore[arg-type]
        yield


@pytest.fixture
def clients(moto_aws: None) -> AwsClients:
    return AwsClients.from_session(region=REGION)


@contextmanager
def published_emulator() -> Iterator[EmulatorServer]:
    """The emulator's server, started and answering on its published listener."""
    server = EmulatorServer(port=0)
    server.start()
    server.publish()
    try:
        yield server
    finally:
        server.reset()  # the backends are process-wide: leave nothing for the next test
        server.stop()


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[EmulatorServer]:
    """The published emulator (modules that test it before `publish` define their own)."""
    with published_emulator() as server:
        yield server


@pytest.fixture
def dispatcher() -> Iterator[LambdaDispatcher]:
    with LambdaDispatcher() as installed:
        yield installed


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig(tenant="acme", environment="dev", tags={"CostCenter": "42"})
