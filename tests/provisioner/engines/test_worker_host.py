"""The pulumi engine's host: data-plane access is resolved once per tenant and region, and a
failed resolution is remembered briefly instead of being retried on every health sample."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from provisioner.config import Settings
from provisioner.engines import worker_host
from provisioner.engines.aws import AwsCredentials
from provisioner.engines.pulumi.engine import PulumiEngine
from provisioner.engines.worker_host import WorkerOnlyHost
from provisioner.errors import EngineUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    # The module's own `time`, not the process's: other threads keep the real clock.
    monkeypatch.setattr(
        "provisioner.engines.worker_host.time", SimpleNamespace(monotonic=clock.monotonic)
    )
    return clock


def counting_resolver(
    monkeypatch: pytest.MonkeyPatch, outcomes: list[AwsCredentials | Exception]
) -> list[str]:
    calls: list[str] = []

    def resolve(settings: Settings, region: str, tenant: str, session_id: str) -> AwsCredentials:
        calls.append(tenant)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(worker_host, "resolve_aws_credentials", resolve)
    return calls


def static_credentials() -> AwsCredentials:
    return AwsCredentials(
        "static", {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    )


def test_access_is_reused_per_tenant_and_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    calls = counting_resolver(monkeypatch, [static_credentials(), static_credentials()])
    host = WorkerOnlyHost(PulumiEngine, Settings(data_dir=tmp_path))
    first = host.data_plane("acme", "us-east-1")
    clock.now += 299
    assert host.data_plane("acme", "us-east-1") is first
    assert calls == ["acme"]
    clock.now += 2  # past the reuse window: resolved again (role credentials expire)
    assert host.data_plane("acme", "us-east-1") is not first
    assert calls == ["acme", "acme"]


def test_a_failed_resolution_is_remembered_briefly_then_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    calls = counting_resolver(
        monkeypatch, [EngineUnavailableError("no AWS credentials"), static_credentials()]
    )
    host = WorkerOnlyHost(PulumiEngine, Settings(data_dir=tmp_path))
    with pytest.raises(EngineUnavailableError, match="no AWS credentials"):
        host.data_plane("acme", "us-east-1")
    clock.now += 29
    with pytest.raises(EngineUnavailableError, match="no AWS credentials"):
        host.data_plane("acme", "us-east-1")
    assert calls == ["acme"]  # the second answer came from the remembered failure
    clock.now += 2
    assert host.data_plane("acme", "us-east-1") is not None
    assert calls == ["acme", "acme"]


def test_a_failure_of_one_tenant_does_not_answer_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    calls = counting_resolver(
        monkeypatch, [EngineUnavailableError("refused"), static_credentials()]
    )
    host = WorkerOnlyHost(PulumiEngine, Settings(data_dir=tmp_path))
    with pytest.raises(EngineUnavailableError):
        host.data_plane("acme", "us-east-1")
    assert host.data_plane("globex", "us-east-1") is not None
    assert calls == ["acme", "globex"]
