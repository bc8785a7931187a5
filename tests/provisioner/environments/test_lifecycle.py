"""Environment lifecycle through the HTTP API with the scripted engine."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stacks.spec import STACK_OUTPUTS
from tests.factories import auth, environment_body, wait_for_operation


def test_create_update_destroy(client: TestClient) -> None:
    response = client.post("/environments", json=environment_body(), headers=auth())
    assert response.status_code == 202, response.text
    operation = response.json()
    assert operation["kind"] == "create"
    assert operation["state"] in ("QUEUED", "RUNNING")
    assert response.headers["Location"].endswith(f"/operations/{operation['id']}")
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["state"] == "PROVISIONING"

    finished = wait_for_operation(client, operation["id"])
    assert finished["state"] == "SUCCEEDED", finished
    assert finished["progress"] == {"done": 3, "total": 3}
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["state"] == "READY"
    assert set(environment["outputs"]) == set(STACK_OUTPUTS)
    assert environment["lastOperation"]["id"] == operation["id"]

    response = client.patch(
        "/environments/acme/dev", json={"config": {"max_bad_row_ratio": 0.05}}, headers=auth()
    )
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["config"]["max_bad_row_ratio"] == 0.05
    assert environment["state"] == "READY"

    response = client.delete("/environments/acme/dev", headers=auth())
    assert response.status_code == 202
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["state"] == "DESTROYED"
    assert environment["outputs"] == {}
