"""Fixtures for the webhook tests: a service whose webhooks may call loopback, with fast
retries, and helpers to subscribe and to follow deliveries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from provisioner.app import create_app
from provisioner.config import Settings
from tests.factories import ADMIN_KEY, auth
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings
from tests.provisioner.webhooks.receiver import Receiver, running_receiver

FAST_WEBHOOKS: dict[str, object] = {
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_retry_initial_s": 0.1,
    "webhook_retry_max_s": 0.4,
    "webhook_poll_interval_s": 0.05,
    "webhook_timeout_s": 2.0,
}


def hook_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    return make_settings(tmp_path / "data", database_url, **{**FAST_WEBHOOKS, **overrides})


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return hook_settings(tmp_path, database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def subscribe(
    client: TestClient,
    url: str,
    events: list[str] | None = None,
    *,
    key: str = ADMIN_KEY,
    **extra: Any,
) -> dict[str, Any]:
    body = {"url": url, "events": events or ["operation.succeeded", "operation.failed"], **extra}
    response = client.post("/admin/webhooks", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(client: TestClient, webhook_id: str, key: str = ADMIN_KEY) -> list[dict[str, Any]]:
    response = client.get(f"/admin/webhooks/{webhook_id}/deliveries", headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_for_deliveries(
    client: TestClient,
    webhook_id: str,
    *,
    count: int = 1,
    state: str = "DELIVERED",
    timeout: float = 20,
) -> list[dict[str, Any]]:
    """Wait until `count` deliveries of the webhook are in `state`; newest first."""
    deadline = time.monotonic() + timeout
    while True:
        items = deliveries(client, webhook_id)
        if len([d for d in items if d["state"] == state]) >= count:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries of {webhook_id} never reached {state}: {items}")
        time.sleep(0.05)
