"""Authentication and tenant isolation: the matrix of who may do what."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import auth, create_api_key, environment_body, wait_for_operation

ENVIRONMENT_ROUTES = [
    ("GET", "/environments/globex/dev"),
    ("PATCH", "/environments/globex/dev"),
    ("DELETE", "/environments/globex/dev"),
    ("POST", "/environments/globex/dev/refresh"),
    ("POST", "/environments/globex/dev/preview"),
    ("GET", "/environments/globex/dev/operations"),
]
ADMIN_ROUTES = [
    ("GET", "/admin/summary"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/api-keys"),
    ("POST", "/admin/api-keys"),
    ("DELETE", "/admin/api-keys/bootstrap-admin"),
    ("GET", "/metrics"),
]


@pytest.fixture
def globex_ready(client: TestClient) -> str:
    operation = client.post(
        "/environments", json=environment_body("globex", "dev"), headers=auth()
    ).json()
    wait_for_operation(client, operation["id"])
    return str(operation["id"])


def test_health_is_the_only_open_route(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    for method, path in [
        ("GET", "/readyz"),
        ("GET", "/environments"),
        ("POST", "/environments"),
        ("GET", "/operations"),
        ("GET", "/operations/x/events"),
        *ENVIRONMENT_ROUTES,
        *ADMIN_ROUTES,
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bad_and_revoked_keys_are_refused(client: TestClient) -> None:
    for header in ("Bearer nope", "Basic abc", "Bearer ", "mdp_x"):
        response = client.get("/environments", headers={"Authorization": header})
        assert response.status_code == 401, header
    key = create_api_key(client, "tenant:acme")
    key_id = next(
        k["id"]
        for k in client.get("/admin/api-keys", headers=auth()).json()
        if k["scope"] == "tenant:acme"
    )
    assert client.get("/environments", headers=auth(key)).status_code == 200
    assert client.delete(f"/admin/api-keys/{key_id}", headers=auth()).status_code == 200
    assert client.get("/environments", headers=auth(key)).status_code == 401


def test_tenant_key_sees_only_its_tenant(client: TestClient, globex_ready: str) -> None:
    acme = create_api_key(client, "tenant:acme")
    # Another tenant's environment and operations answer exactly like missing ones.
    for method, path in ENVIRONMENT_ROUTES:
        response = client.request(
            method, path, json={} if method == "PATCH" else None, headers=auth(acme)
        )
        assert response.status_code == 404, (method, path, response.text)
    assert client.get(f"/operations/{globex_ready}", headers=auth(acme)).status_code == 404
    assert client.get(f"/operations/{globex_ready}/events", headers=auth(acme)).status_code == 404
    assert client.post(f"/operations/{globex_ready}/cancel", headers=auth(acme)).status_code == 404
    assert client.get("/environments", headers=auth(acme)).json()["total"] == 0
    assert client.get("/environments?tenant=globex", headers=auth(acme)).json()["total"] == 0
    assert client.get("/operations", headers=auth(acme)).json()["total"] == 0
    # It cannot create in another tenant either.
    response = client.post(
        "/environments", json=environment_body("globex", "x"), headers=auth(acme)
    )
    assert response.status_code == 403
    # But it works fully on its own tenant.
    operation = client.post(
        "/environments", json=environment_body("acme", "dev"), headers=auth(acme)
    )
    assert operation.status_code == 202
    assert wait_for_operation(client, operation.json()["id"], key=acme)["state"] == "SUCCEEDED"
    listing = client.get("/environments", headers=auth(acme)).json()
    assert [(e["tenant"], e["name"]) for e in listing["items"]] == [("acme", "dev")]
    assert client.get("/readyz", headers=auth(acme)).status_code == 200


def test_tenant_key_on_admin_routes_is_403(client: TestClient) -> None:
    acme = create_api_key(client, "tenant:acme")
    for method, path in ADMIN_ROUTES:
        response = client.request(
            method, path, json={"scope": "admin"} if method == "POST" else None, headers=auth(acme)
        )
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"


def test_api_keys_are_shown_once_and_stored_hashed(client: TestClient) -> None:
    response = client.post(
        "/admin/api-keys", json={"scope": "tenant:acme", "description": "ci"}, headers=auth()
    )
    assert response.status_code == 201
    created = response.json()
    assert created["key"].startswith("mdp_")
    assert created["key"].startswith(created["prefix"])
    listed = client.get("/admin/api-keys", headers=auth()).json()
    assert all("key" not in item for item in listed)
    assert created["key"] not in client.get("/admin/api-keys", headers=auth()).text
    for bad in ("root", "tenant:", "tenant:Bad-Tenant", "tenant:a-b"):
        response = client.post("/admin/api-keys", json={"scope": bad}, headers=auth())
        assert response.status_code == 422, bad
    assert client.delete("/admin/api-keys/nope", headers=auth()).status_code == 404


def test_audit_records_who_did_what_and_the_result(client: TestClient, globex_ready: str) -> None:
    acme = create_api_key(client, "tenant:acme")
    client.delete("/environments/globex/dev", headers=auth(acme))  # 404 for acme
    client.get("/admin/summary", headers=auth(acme))  # 403
    client.get("/environments")  # 401
    entries = client.get("/admin/audit", headers=auth()).json()["items"]
    actions = [(e["action"], e["statusCode"], e["result"]) for e in entries]
    assert ("POST /environments", 202, "accepted") in actions
    assert ("POST /admin/api-keys", 201, "ok") in actions
    assert ("DELETE /environments/{tenant}/{name}", 404, "rejected") in actions
    assert ("GET /admin/summary", 403, "denied") in actions
    assert ("GET /environments", 401, "denied") in actions
    create = next(e for e in entries if e["action"] == "POST /environments")
    assert create["actor"] == "bootstrap-admin"
    assert create["target"] == "globex/dev"
    assert create["tenant"] == "globex"
    by_tenant = client.get("/admin/audit?tenant=globex", headers=auth()).json()
    assert by_tenant["total"] >= 1
    assert all(e["tenant"] == "globex" for e in by_tenant["items"])


def test_keys_record_when_they_were_last_used(client: TestClient) -> None:
    key = create_api_key(client, "tenant:acme")
    listed = {k["scope"]: k for k in client.get("/admin/api-keys", headers=auth()).json()}
    assert listed["tenant:acme"]["lastUsedAt"] is None
    assert client.get("/environments", headers=auth(key)).status_code == 200
    listed = {k["scope"]: k for k in client.get("/admin/api-keys", headers=auth()).json()}
    assert listed["tenant:acme"]["lastUsedAt"] is not None
    assert listed["admin"]["lastUsedAt"] is not None
