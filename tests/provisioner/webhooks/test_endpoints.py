"""`/admin/webhooks`: subscribing, listing, deleting; scopes; bad input; the secret shown once."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from provisioner.app import create_app
from tests.factories import ADMIN_KEY, auth, create_api_key
from tests.provisioner.conftest import SCRIPTED_ENGINE
from tests.provisioner.webhooks.conftest import hook_settings, subscribe

URL = "http://127.0.0.1:9/hook"


def test_create_returns_the_secret_once_and_never_again(client: TestClient) -> None:
    created = subscribe(client, URL, ["operation.failed"])
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["operation.failed"]
    assert created["tenant"] is None
    assert created["createdBy"] == "bootstrap-admin"
    webhook_id, secret = created["id"], created["secret"]

    shown = client.get(f"/admin/webhooks/{webhook_id}", headers=auth())
    listed = client.get("/admin/webhooks", headers=auth())
    audit = client.get("/admin/audit", headers=auth())
    for response in (shown, listed, audit):
        assert response.status_code == 200
        assert secret not in response.text
        assert "secret" not in response.text
    assert listed.json()["items"] == [shown.json()]
    assert {
        "action": "POST /admin/webhooks",
        "target": webhook_id,
        "statusCode": 201,
    }.items() <= next(e for e in audit.json()["items"] if e["action"].endswith("webhooks")).items()


def test_a_given_secret_is_kept_but_not_echoed_later(client: TestClient) -> None:
    secret = "my-own-webhook-secret-0123"
    created = subscribe(client, URL, secret=secret)
    assert created["secret"] == secret
    assert secret not in client.get(f"/admin/webhooks/{created['id']}", headers=auth()).text
    assert secret not in client.get("/admin/audit", headers=auth()).text


def test_delete_removes_the_webhook(client: TestClient) -> None:
    webhook_id = subscribe(client, URL)["id"]
    response = client.delete(f"/admin/webhooks/{webhook_id}", headers=auth())
    assert response.status_code == 204
    assert client.get(f"/admin/webhooks/{webhook_id}", headers=auth()).status_code == 404
    assert client.delete(f"/admin/webhooks/{webhook_id}", headers=auth()).status_code == 404
    assert client.get("/admin/webhooks", headers=auth()).json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": URL, "events": ["operation.exploded"]}, "events", "unknown event type"),
        ({"url": URL, "events": []}, "events", "at least 1"),
        ({"url": "ftp://127.0.0.1/x", "events": ["files.failed"]}, "url", "http"),
        ({"url": "not a url", "events": ["files.failed"]}, "url", "http"),
        ({"url": "http://a:b@127.0.0.1/", "events": ["files.failed"]}, "url", "credentials"),
        ({"url": URL, "events": ["files.failed"], "tenant": "Bad-Tenant"}, "tenant", "match"),
        ({"url": URL, "events": ["files.failed"], "secret": "short"}, "secret", "16"),
        ({"url": URL, "events": ["files.failed"], "extra": 1}, "extra", "Extra"),
        ({"events": ["files.failed"]}, "url", "required"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str, message: str
) -> None:
    response = client.post("/admin/webhooks", json=body, headers=auth())
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert any(e["loc"][:2] == ["body", field] and message in e["msg"] for e in error["errors"])


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.8/hook",  # private, not listed (only 127.0.0.1 is)
        "http://192.168.0.0:8080/",
        "http://[::1]/hook",  # loopback, but only 127.0.0.1 is listed
        "http://169.254.169.254/",
        "http://nowhere.invalid/",
    ],
)
def test_refused_hosts_are_a_422_naming_url(client: TestClient, url: str) -> None:
    response = client.post(
        "/admin/webhooks", json={"url": url, "events": ["files.failed"]}, headers=auth()
    )
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "url"]]
    assert client.get("/admin/webhooks", headers=auth()).json()["total"] == 0


def test_loopback_is_refused_when_not_listed(tmp_path: Path, database_url: str) -> None:
    settings = hook_settings(tmp_path, database_url, webhook_allowed_hosts="10.1.0.0/16")
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as other:
        refused = other.post(
            "/admin/webhooks", json={"url": URL, "events": ["files.failed"]}, headers=auth()
        )
        assert refused.status_code == 422
        assert "127.0.0.1 is not a public address" in refused.json()["detail"]
        by_name = other.post(
            "/admin/webhooks",
            json={"url": "http://localhost:9/", "events": ["files.failed"]},
            headers=auth(),
        )
        assert by_name.status_code == 422
        assert "'localhost' resolves to 127.0.0.1" in by_name.json()["detail"]
        allowed = other.post(
            "/admin/webhooks",
            json={"url": "http://10.1.3.4/", "events": ["files.failed"]},
            headers=auth(),
        )
        assert allowed.status_code == 201


def test_tenant_keys_manage_only_their_own_tenants_webhooks(client: TestClient) -> None:
    acme = create_api_key(client, "tenant:acme")
    globex = create_api_key(client, "tenant:globex")
    admin_wide = subscribe(client, URL)
    admin_for_globex = subscribe(client, URL, tenant="globex")
    mine = subscribe(client, URL, key=acme)
    assert mine["tenant"] == "acme"  # forced to the key's tenant
    assert mine["createdBy"] != "bootstrap-admin"
    explicit = subscribe(client, URL, key=acme, tenant="acme")
    assert explicit["tenant"] == "acme"

    other = client.post(
        "/admin/webhooks",
        json={"url": URL, "events": ["files.failed"], "tenant": "globex"},
        headers=auth(acme),
    )
    assert other.status_code == 403

    listed = client.get("/admin/webhooks", headers=auth(acme)).json()
    assert {item["id"] for item in listed["items"]} == {mine["id"], explicit["id"]}
    assert client.get("/admin/webhooks?tenant=globex", headers=auth(acme)).json()["total"] == 0
    everything = client.get("/admin/webhooks", headers=auth()).json()
    assert everything["total"] == 4
    assert client.get("/admin/webhooks?tenant=globex", headers=auth()).json()["items"] == [
        {k: v for k, v in admin_for_globex.items() if k != "secret"}
    ]
    for foreign in (admin_wide["id"], admin_for_globex["id"]):
        for method, path in [
            ("GET", f"/admin/webhooks/{foreign}"),
            ("DELETE", f"/admin/webhooks/{foreign}"),
            ("GET", f"/admin/webhooks/{foreign}/deliveries"),
            ("POST", f"/admin/webhooks/{foreign}/deliveries/x/redeliver"),
        ]:
            assert client.request(method, path, headers=auth(acme)).status_code == 404
    assert client.get(f"/admin/webhooks/{mine['id']}", headers=auth(globex)).status_code == 404
    assert client.delete(f"/admin/webhooks/{mine['id']}", headers=auth(acme)).status_code == 204
    # The admin key manages a tenant's webhook too.
    assert client.delete(f"/admin/webhooks/{explicit['id']}", headers=auth()).status_code == 204


def test_every_route_needs_a_key(client: TestClient) -> None:
    webhook_id = subscribe(client, URL)["id"]
    routes = [
        ("POST", "/admin/webhooks"),
        ("GET", "/admin/webhooks"),
        ("GET", f"/admin/webhooks/{webhook_id}"),
        ("DELETE", f"/admin/webhooks/{webhook_id}"),
        ("GET", f"/admin/webhooks/{webhook_id}/deliveries"),
        ("POST", f"/admin/webhooks/{webhook_id}/deliveries/x/redeliver"),
    ]
    for method, path in routes:
        for headers in ({}, auth("mdp_not-a-key-at-all-0000000000000")):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path)
    assert client.get(f"/admin/webhooks/{webhook_id}", headers=auth(ADMIN_KEY)).status_code == 200


def test_unknown_ids_are_404(client: TestClient) -> None:
    webhook_id = subscribe(client, URL)["id"]
    assert client.get("/admin/webhooks/nope", headers=auth()).status_code == 404
    response = client.post(
        f"/admin/webhooks/{webhook_id}/deliveries/nope/redeliver", headers=auth()
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
