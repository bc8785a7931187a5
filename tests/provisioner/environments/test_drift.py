"""The environment's drift status: set by a refresh, `?drifted`, tenant isolation, the
`environment.drifted` webhook in the outbox, and what an update does to the verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.webhooks.models import DeliveryRow
from tests.factories import auth, create_api_key, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE
from tests.provisioner.webhooks.conftest import hook_settings, subscribe
from tests.provisioner.webhooks.receiver import Receiver, running_receiver

QUEUE_DRIFT = {
    "resource": "p-acme-dev-ingest.fifo",
    "type": "aws:sqs/queue:Queue",
    "kind": "update",
    "attributes": ["VisibilityTimeout"],
}
GONE = {
    "resource": "/aws/lambda/p-acme-dev-ingest",
    "type": "aws:cloudwatch/logGroup:LogGroup",
    "kind": "create",
    "attributes": [],
}


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


def create(client: TestClient, tenant: str, name: str, drift_file: Path) -> None:
    body = environment_body(tenant, name, script={"drift-file": str(drift_file)})
    response = client.post("/environments", json=body, headers=auth())
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"


def run(client: TestClient, tenant: str, name: str, verb: str, **body: Any) -> dict[str, Any]:
    path = f"/environments/{tenant}/{name}"
    if verb == "update":
        response = client.patch(path, json=body, headers=auth())
    else:
        response = client.post(f"{path}/{verb}", headers=auth())
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    shown: dict[str, Any] = client.get(path, headers=auth()).json()
    return shown


def listed(client: TestClient, query: str, key: str | None = None) -> list[str]:
    response = client.get(f"/environments?{query}", headers=auth(key) if key else auth())
    assert response.status_code == 200, response.text
    return [f"{item['tenant']}/{item['name']}" for item in response.json()["items"]]


def outbox(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session(readonly=True) as session:
        rows = session.scalars(
            select(DeliveryRow)
            .where(DeliveryRow.type == event_type)
            .order_by(DeliveryRow.created_at)
        ).all()
        return [json.loads(row.body) for row in rows]


def test_a_refresh_records_the_drift_it_found(client: TestClient, tmp_path: Path) -> None:
    drift_file = tmp_path / "drift.json"
    create(client, "acme", "dev", drift_file)
    shown = client.get("/environments/acme/dev", headers=auth()).json()
    assert shown["drift"] == {
        "status": "UNKNOWN",
        "checkedAt": None,
        "changes": [],
        "operationId": None,
    }

    assert run(client, "acme", "dev", "refresh")["drift"]["status"] == "IN_SYNC"
    drift_file.write_text(json.dumps([QUEUE_DRIFT, GONE]))
    refreshed = run(client, "acme", "dev", "refresh")

    drift = refreshed["drift"]
    assert drift["status"] == "DRIFTED"
    assert drift["operationId"] == refreshed["lastOperation"]["id"]
    assert drift["checkedAt"] is not None
    assert drift["changes"] == [GONE, QUEUE_DRIFT]  # by type, then resource
    assert listed(client, "drifted=true") == ["acme/dev"]
    assert listed(client, "drifted=false") == []


def test_a_preview_leaves_the_verdict_and_an_update_makes_it_unknown(
    client: TestClient, tmp_path: Path
) -> None:
    drift_file = tmp_path / "drift.json"
    create(client, "acme", "dev", drift_file)
    drift_file.write_text(json.dumps([QUEUE_DRIFT]))
    run(client, "acme", "dev", "refresh")

    assert run(client, "acme", "dev", "preview")["drift"]["status"] == "DRIFTED"
    updated = run(client, "acme", "dev", "update", config={"memory_mb": 512})

    # The update applied the declared state again: the old findings no longer hold.
    assert updated["drift"]["status"] == "UNKNOWN"
    assert updated["drift"]["changes"] == []
    assert listed(client, "drifted=true") == []
    assert run(client, "acme", "dev", "refresh")["drift"]["status"] == "IN_SYNC"


def test_drifted_lists_only_the_callers_tenant(client: TestClient, tmp_path: Path) -> None:
    for tenant in ("acme", "beta"):
        drift_file = tmp_path / f"{tenant}.json"
        create(client, tenant, "dev", drift_file)
        drift_file.write_text(json.dumps([QUEUE_DRIFT]))
        run(client, tenant, "dev", "refresh")
    beta = create_api_key(client, "tenant:beta")

    assert listed(client, "drifted=true") == ["acme/dev", "beta/dev"]
    assert listed(client, "drifted=true", beta) == ["beta/dev"]
    assert listed(client, "drifted=true&tenant=acme", beta) == []
    assert client.get("/environments/acme/dev", headers=auth(beta)).status_code == 404


def test_drift_goes_to_the_outbox_once_per_distinct_drift(
    client: TestClient, tmp_path: Path, receiver: Receiver
) -> None:
    subscribe(client, receiver.url(), ["environment.drifted"])
    drift_file = tmp_path / "drift.json"
    create(client, "acme", "dev", drift_file)
    run(client, "acme", "dev", "refresh")
    assert outbox(client, "environment.drifted") == []

    drift_file.write_text(json.dumps([QUEUE_DRIFT]))
    first = run(client, "acme", "dev", "refresh")
    run(client, "acme", "dev", "refresh")  # the same drift again: no second event
    drift_file.write_text(json.dumps([QUEUE_DRIFT, GONE]))
    third = run(client, "acme", "dev", "refresh")

    events = outbox(client, "environment.drifted")
    assert [event["data"] for event in events] == [
        {
            "tenant": "acme",
            "name": "dev",
            "changes": [QUEUE_DRIFT],
            "operationId": first["drift"]["operationId"],
        },
        {
            "tenant": "acme",
            "name": "dev",
            "changes": [GONE, QUEUE_DRIFT],
            "operationId": third["drift"]["operationId"],
        },
    ]
