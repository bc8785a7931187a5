"""Fixtures and helpers of the rollout tests: the service with the scripted engine, a rollout
scheduler that ticks often, a verifier the test controls, and a sampler of the registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.files.canary import CanaryFailed
from provisioner.rollouts.verify import VerifyTarget
from tests.factories import ADMIN_KEY, auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

CODE_VERSION = "c0de00000001"
FINAL_ROLLOUT_STATES = ("SUCCEEDED", "HALTED", "CANCELLED")


class ScriptedVerifier:
    """Passes every environment except those in `failing`; `gate` (when set) holds each
    verification until it is set or the service shuts down."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[str] = []
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(
        self, target: VerifyTarget, timeout_s: float, cancel: threading.Event
    ) -> dict[str, Any]:
        name = f"{target.tenant}/{target.name}"
        with self._lock:
            self.calls.append(name)
        while self.gate is not None and not self.gate.is_set():
            if cancel.wait(0.02):
                raise CanaryFailed("cancelled")
        if name in self.failing:
            raise CanaryFailed(f"canary file of {name} ended FAILED")
        return {"status": "COMPLETED", "environment": name}


@pytest.fixture
def rollout_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path / "data",
        database_url,
        rollout_interval_s=0.1,
        max_concurrent_operations=8,
    )


@pytest.fixture
def verifier() -> ScriptedVerifier:
    return ScriptedVerifier()


def build_app(settings: Settings, verifier: ScriptedVerifier | None) -> Any:
    return create_app(
        settings,
        engine_reference=SCRIPTED_ENGINE,
        code_version=CODE_VERSION,
        rollout_verifier=verifier,
    )


@pytest.fixture
def client(rollout_settings: Settings, verifier: ScriptedVerifier) -> Iterator[TestClient]:
    with TestClient(build_app(rollout_settings, verifier)) as test_client:
        yield test_client


def publish(client: TestClient, name: str, config: Mapping[str, Any]) -> int:
    """Publish a template (or its next version); returns the version."""
    response = client.post(
        "/admin/templates", json={"name": name, "config": dict(config)}, headers=auth()
    )
    if response.status_code == 409:
        response = client.post(
            f"/admin/templates/{name}/versions", json={"config": dict(config)}, headers=auth()
        )
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


def ready(
    client: TestClient,
    tenant: str,
    name: str,
    *,
    template: str | None = None,
    script: Mapping[str, str] | None = None,
    key: str = ADMIN_KEY,
    **extra: Any,
) -> None:
    body = environment_body(tenant, name, script=script, **extra)
    if template is not None:
        body["template"] = template
    created = client.post("/environments", json=body, headers=auth(key))
    assert created.status_code == 202, created.text
    assert wait_for_operation(client, created.json()["id"], key=key)["state"] == "SUCCEEDED"


def start(client: TestClient, body: Mapping[str, Any], key: str = ADMIN_KEY) -> dict[str, Any]:
    response = client.post("/rollouts", json=dict(body), headers=auth(key))
    assert response.status_code == 202, response.text
    rollout: dict[str, Any] = response.json()
    assert response.headers["Location"].endswith(f"/rollouts/{rollout['id']}")
    return rollout


def show(client: TestClient, rollout_id: str, key: str = ADMIN_KEY) -> dict[str, Any]:
    response = client.get(f"/rollouts/{rollout_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_rollout(
    client: TestClient,
    rollout_id: str,
    *,
    states: tuple[str, ...] = FINAL_ROLLOUT_STATES,
    timeout: float = 90,
    key: str = ADMIN_KEY,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = show(client, rollout_id, key)
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"rollout stuck in {body['state']}: {body}"
        time.sleep(0.05)


def wait_until(condition: Any, timeout: float = 60, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.05)


def targets_by_name(rollout: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{t['tenant']}/{t['name']}": t for t in rollout["targets"]}


class Sampler(threading.Thread):
    """Reads the registry every few milliseconds: the rollout's active targets and its
    operations, and which targets ever ran while a canary had not ended."""

    def __init__(self, url: str, rollout_id: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.rollout_id = rollout_id
        self.stop = threading.Event()
        self.samples = 0
        self.max_active = 0
        self.max_running_operations = 0
        self.ran_beside_canary: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            with self.engine.connect() as connection:
                targets = connection.execute(
                    text("SELECT name, canary, state FROM rollout_targets WHERE rollout_id = :id"),
                    {"id": self.rollout_id},
                ).all()
                running = connection.execute(
                    text(
                        "SELECT count(*) FROM operations"
                        " WHERE rollout_id = :id AND state IN ('QUEUED', 'RUNNING')"
                    ),
                    {"id": self.rollout_id},
                ).scalar_one()
            active = [t for t in targets if t.state in ("RUNNING", "VERIFYING")]
            if any(t.canary and t.state not in ("SUCCEEDED", "FAILED", "SKIPPED") for t in targets):
                self.ran_beside_canary |= {t.name for t in active if not t.canary}
            self.samples += 1
            self.max_active = max(self.max_active, len(active))
            self.max_running_operations = max(self.max_running_operations, running)
            time.sleep(0.01)
        self.engine.dispose()
