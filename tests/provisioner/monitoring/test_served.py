"""`health` in the environment JSON is the registry's last sample: served by the detail, the
listing and the fleet's counts alike, UNKNOWN before one, and only to the environment's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioner.environments.models import EnvironmentRow
from provisioner.monitoring.models import EnvironmentHealthRow
from tests.factories import auth, create_api_key, environment_body, wait_for_operation

SAMPLE: dict[str, Any] = {
    "status": "ALARM",
    "alarms": [{"name": "p-acme-dev-validator-dlq-depth", "state": "ALARM"}],
    "dlqDepths": {"ingest": 0, "validator": 2, "processor": 0, "aggregator": 0},
    "completedLastHour": 7,
    "failedLastHour": 2,
}


def _create(client: TestClient, tenant: str, name: str) -> None:
    response = client.post("/environments", json=environment_body(tenant, name), headers=auth())
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"


def _record(client: TestClient, tenant: str, name: str, checked_at: datetime) -> None:
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session() as session:
        row = session.scalars(
            select(EnvironmentRow).where(
                EnvironmentRow.tenant == tenant, EnvironmentRow.name == name
            )
        ).one()
        session.add(
            EnvironmentHealthRow(
                environment_id=row.id,
                health=SAMPLE,
                checked_at=checked_at,
                failed_watermark="2026-01-01T00:00:00.000Z",
                failed_recent={},
                version=1,
            )
        )


def test_health_is_unknown_before_a_sample_then_the_sample(client: TestClient) -> None:
    _create(client, "acme", "dev")
    health = client.get("/environments/acme/dev", headers=auth()).json()["health"]
    assert health == {
        "status": "UNKNOWN",
        "alarms": [],
        "dlqDepths": None,
        "completedLastHour": None,
        "failedLastHour": None,
        "checkedAt": None,
    }
    checked = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    _record(client, "acme", "dev", checked)
    health = client.get("/environments/acme/dev", headers=auth()).json()["health"]
    assert health == {**SAMPLE, "checkedAt": "2026-12-01T23:00:00Z"}
    listed = client.get("/environments", headers=auth()).json()["items"]
    assert [item["health"]["status"] for item in listed] == ["ALARM"]
    fleet = client.get("/fleet", headers=auth()).json()
    assert fleet["failing"] == 1


def test_another_tenant_sees_neither_the_environment_nor_its_health(client: TestClient) -> None:
    _create(client, "acme", "dev")
    _record(client, "acme", "dev", datetime(2026, 12, 1, 23, 0, tzinfo=UTC))
    other = create_api_key(client, "tenant:globex")
    assert client.get("/environments/acme/dev", headers=auth(other)).status_code == 404
    assert client.get("/environments", headers=auth(other)).json()["items"] == []
    own = create_api_key(client, "tenant:acme")
    health = client.get("/environments/acme/dev", headers=auth(own)).json()["health"]
    assert health["status"] == "ALARM"
