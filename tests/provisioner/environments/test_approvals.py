"""Protected environments: updates and destroys wait, with a preview, for another admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from provisioner.db import utcnow
from provisioner.environments.models import EnvironmentRow
from tests.factories import auth, create_api_key, environment_body, wait_for_operation

AWAITING = ("AWAITING_APPROVAL",)


def _protected(client: TestClient) -> None:
    body = environment_body("acme", "prod", script={"resources": "2"}, protected=True)
    created = client.post("/environments", json=body, headers=auth())
    assert created.status_code == 202, created.text
    assert wait_for_operation(client, created.json()["id"])["state"] == "SUCCEEDED"


def _awaiting_update(client: TestClient) -> dict[str, Any]:
    patched = client.patch(
        "/environments/acme/prod", json={"config": {"memory_mb": 1024}}, headers=auth()
    )
    assert patched.status_code == 202, patched.text
    return wait_for_operation(client, patched.json()["id"], states=AWAITING)


def test_update_waits_with_its_preview_and_runs_once_approved(client: TestClient) -> None:
    _protected(client)
    operation = _awaiting_update(client)
    assert operation["preview"]["changes"] == {"same": 2}
    assert [step["resource"] for step in operation["preview"]["steps"]] == [
        "resource-1",
        "resource-2",
    ]
    shown = client.get("/environments/acme/prod", headers=auth()).json()
    assert shown["state"] == "READY"
    assert shown["config"]["memory_mb"] == 512  # not before the approval
    # The awaiting operation holds the environment (one active operation).
    assert client.delete("/environments/acme/prod", headers=auth()).status_code == 409
    # The requester's own key may not approve; a tenant key may not either.
    own = client.post(f"/operations/{operation['id']}/approve", headers=auth())
    assert own.status_code == 403
    tenant_key = create_api_key(client, "tenant:acme")
    by_tenant = client.post(f"/operations/{operation['id']}/approve", headers=auth(tenant_key))
    assert by_tenant.status_code == 403
    other_admin = create_api_key(client, "admin")
    approved = client.post(f"/operations/{operation['id']}/approve", headers=auth(other_admin))
    assert approved.status_code == 202, approved.text
    done = wait_for_operation(client, operation["id"])
    assert done["state"] == "SUCCEEDED"
    assert done["approvedBy"] is not None
    shown = client.get("/environments/acme/prod", headers=auth()).json()
    assert shown["config"]["memory_mb"] == 1024
    again = client.post(f"/operations/{operation['id']}/approve", headers=auth(other_admin))
    assert again.status_code == 409


def test_destroy_preview_lists_every_resource_as_a_delete(client: TestClient) -> None:
    _protected(client)
    deleted = client.delete("/environments/acme/prod", headers=auth())
    operation = wait_for_operation(client, deleted.json()["id"], states=AWAITING)
    assert operation["preview"]["changes"] == {"delete": 2}
    assert {step["step"] for step in operation["preview"]["steps"]} == {"delete"}
    other_admin = create_api_key(client, "admin")
    client.post(f"/operations/{operation['id']}/approve", headers=auth(other_admin))
    assert wait_for_operation(client, operation["id"])["state"] == "SUCCEEDED"
    shown = client.get("/environments/acme/prod", headers=auth()).json()
    assert shown["state"] == "DESTROYED"


def test_reject_cancels_and_leaves_the_environment(client: TestClient) -> None:
    _protected(client)
    operation = _awaiting_update(client)
    tenant_key = create_api_key(client, "tenant:acme")
    assert (
        client.post(f"/operations/{operation['id']}/reject", headers=auth(tenant_key)).status_code
        == 403
    )
    rejected = client.post(f"/operations/{operation['id']}/reject", headers=auth())
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["state"] == "CANCELLED"
    assert rejected.json()["error"]["code"] == "rejected"
    shown = client.get("/environments/acme/prod", headers=auth()).json()
    assert shown["state"] == "READY"
    assert shown["config"]["memory_mb"] == 512


def test_stale_preview_is_409(client: TestClient) -> None:
    _protected(client)
    operation = _awaiting_update(client)
    # The environment changes behind the preview's back (another replica, an operator).
    database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        session.execute(
            update(EnvironmentRow)
            .where(EnvironmentRow.name == "prod")
            .values(tags={"changed": "yes"})
        )
    other_admin = create_api_key(client, "admin")
    stale = client.post(f"/operations/{operation['id']}/approve", headers=auth(other_admin))
    assert stale.status_code == 409
    assert "changed since" in stale.json()["detail"]
    assert (
        client.get(f"/operations/{operation['id']}", headers=auth()).json()["state"]
        == "AWAITING_APPROVAL"
    )


def test_unapproved_operation_expires(client: TestClient) -> None:
    _protected(client)
    operation = _awaiting_update(client)
    scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
    ttl = client.app.state.services.settings.approval_ttl_minutes  # type: ignore[attr-defined]
    assert scheduler.tick(utcnow() + timedelta(minutes=ttl - 1)).approvals_expired == []
    result = scheduler.tick(utcnow() + timedelta(minutes=ttl + 1))
    assert result.approvals_expired == [operation["id"]]
    expired = client.get(f"/operations/{operation['id']}", headers=auth()).json()
    assert expired["state"] == "CANCELLED"
    assert expired["error"] == {
        "code": "approval_expired",
        "message": f"not approved within {ttl} minutes",
    }
    assert client.get("/environments/acme/prod", headers=auth()).json()["state"] == "READY"


def test_only_admin_keys_set_protected(client: TestClient) -> None:
    key = create_api_key(client, "tenant:acme")
    body = environment_body("acme", "dev", protected=True)
    assert client.post("/environments", json=body, headers=auth(key)).status_code == 403
    created = client.post("/environments", json=environment_body("acme", "dev"), headers=auth(key))
    wait_for_operation(client, created.json()["id"])
    patched = client.patch("/environments/acme/dev", json={"protected": True}, headers=auth(key))
    assert patched.status_code == 403
    patched = client.patch("/environments/acme/dev", json={"protected": True}, headers=auth())
    assert patched.status_code == 200, patched.text
    assert patched.json()["protected"] is True
    unprotected = client.patch("/environments/acme/dev", json={"protected": False}, headers=auth())
    assert unprotected.json()["protected"] is False


def test_unprotected_environments_do_not_wait(client: TestClient) -> None:
    created = client.post("/environments", json=environment_body("acme", "dev"), headers=auth())
    wait_for_operation(client, created.json()["id"])
    deleted = client.delete("/environments/acme/dev", headers=auth())
    done = wait_for_operation(client, deleted.json()["id"])
    assert done["state"] == "SUCCEEDED"
    assert done["preview"] is None
