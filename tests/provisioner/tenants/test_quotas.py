"""Tenant quotas: PUT/GET /admin/tenants, 403 quota_exceeded, and 20 concurrent creates."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.factories import auth, create_api_key, environment_body, wait_for_operation


def _put(client: TestClient, tenant: str, **quota: object) -> dict[str, object]:
    response = client.put(f"/admin/tenants/{tenant}", json=quota, headers=auth())
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_quota_and_usage_are_listed(client: TestClient) -> None:
    created = client.post("/environments", json=environment_body("acme", "dev"), headers=auth())
    wait_for_operation(client, created.json()["id"])
    body = _put(client, "acme", maxEnvironments=3, allowedRegions=["eu-west-1", "us-east-1"])
    assert body == {
        "tenant": "acme",
        "quota": {
            "maxEnvironments": 3,
            "allowedRegions": ["eu-west-1", "us-east-1"],
            "maxMemoryMb": None,
        },
        "usage": {"environments": 1},
    }
    listed = client.get("/admin/tenants", headers=auth()).json()
    assert [item["tenant"] for item in listed] == ["acme"]
    assert listed[0]["usage"] == {"environments": 1}


def test_destroyed_environments_do_not_count(client: TestClient) -> None:
    created = client.post("/environments", json=environment_body("acme", "dev"), headers=auth())
    wait_for_operation(client, created.json()["id"])
    destroyed = client.delete("/environments/acme/dev", headers=auth())
    wait_for_operation(client, destroyed.json()["id"])
    _put(client, "acme", maxEnvironments=1)
    assert client.get("/admin/tenants", headers=auth()).json()[0]["usage"] == {"environments": 0}
    again = client.post("/environments", json=environment_body("acme", "dev"), headers=auth())
    assert again.status_code == 202, again.text


def test_quota_routes_need_an_admin_key(client: TestClient) -> None:
    key = create_api_key(client, "tenant:acme")
    assert client.put("/admin/tenants/acme", json={}, headers=auth(key)).status_code == 403
    assert client.get("/admin/tenants", headers=auth(key)).status_code == 403


def test_bad_quotas_are_422(client: TestClient) -> None:
    for tenant, body in (
        ("Bad-Tenant", {}),
        ("acme", {"maxEnvironments": -1}),
        ("acme", {"allowedRegions": ["mars-1"]}),
        ("acme", {"maxMemoryMb": 64}),
        ("acme", {"maxEnvironmentz": 1}),
    ):
        response = client.put(f"/admin/tenants/{tenant}", json=body, headers=auth())
        assert response.status_code == 422, (tenant, body, response.text)


def test_requests_over_quota_are_403_and_create_nothing(client: TestClient) -> None:
    _put(client, "acme", maxEnvironments=1, allowedRegions=["us-east-1"], maxMemoryMb=1024)
    first = client.post("/environments", json=environment_body("acme", "one"), headers=auth())
    assert first.status_code == 202
    for body, what in (
        (environment_body("acme", "two"), "maxEnvironments"),
        (environment_body("acme", "three", region="eu-west-1"), "region eu-west-1"),
        (environment_body("acme", "four", config={"memory_mb": 2048}), "maxMemoryMb"),
    ):
        response = client.post("/environments", json=body, headers=auth())
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "quota_exceeded"
        assert what in response.json()["detail"]
        assert client.get(f"/environments/acme/{body['name']}", headers=auth()).status_code == 404
    wait_for_operation(client, first.json()["id"])
    patched = client.patch(
        "/environments/acme/one", json={"config": {"memory_mb": 4096}}, headers=auth()
    )
    assert patched.status_code == 403
    assert patched.json()["error"] == "quota_exceeded"
    shown = client.get("/environments/acme/one", headers=auth()).json()
    assert shown["config"]["memory_mb"] == 512
    # Another tenant is not limited by acme's quota.
    other = client.post("/environments", json=environment_body("globex", "two"), headers=auth())
    assert other.status_code == 202


def test_quota_holds_under_20_concurrent_creates(client: TestClient) -> None:
    _put(client, "acme", maxEnvironments=5)

    def create(index: int) -> int:
        body = environment_body("acme", f"e{index}", script={"resources": "1"})
        return client.post("/environments", json=body, headers=auth()).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(create, range(20)))
    assert sorted(codes) == [202] * 5 + [403] * 15, codes
    listed = client.get("/environments?tenant=acme", headers=auth()).json()
    assert listed["total"] == 5
