"""Templates: publishing, versions, the built-in default, and who may do what."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stacks.config import PipelineSettings
from tests.factories import auth, create_api_key


def publish(client: TestClient, name: str, config: dict[str, object]) -> dict[str, object]:
    response = client.post(
        "/admin/templates", json={"name": name, "config": config}, headers=auth()
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def add_version(client: TestClient, name: str, config: dict[str, object]) -> dict[str, object]:
    response = client.post(
        f"/admin/templates/{name}/versions", json={"config": config}, headers=auth()
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_default_template_exists_with_the_built_in_defaults(client: TestClient) -> None:
    body = client.get("/templates/default", headers=auth()).json()
    assert body["latestVersion"] == 1
    assert [v["version"] for v in body["versions"]] == [1]
    assert body["versions"][0]["config"] == PipelineSettings().model_dump(mode="json")
    names = [item["name"] for item in client.get("/templates", headers=auth()).json()["items"]]
    assert names == ["default"]


def test_publish_and_add_versions_which_never_change(client: TestClient) -> None:
    first = publish(client, "gold", {"memory_mb": 1024})
    assert first["version"] == 1
    assert first["config"]["memory_mb"] == 1024  # type: ignore[index]
    # The rest of a version's config is the built-in defaults at the time it was published.
    assert first["config"]["stage_timeout_s"] == 300  # type: ignore[index]
    second = add_version(client, "gold", {"memory_mb": 2048, "max_bad_row_ratio": 0.05})
    assert second["version"] == 2
    third = add_version(client, "gold", {})
    assert third["version"] == 3
    body = client.get("/templates/gold", headers=auth()).json()
    assert body["latestVersion"] == 3
    assert [v["version"] for v in body["versions"]] == [1, 2, 3]
    assert body["versions"][0]["config"]["memory_mb"] == 1024
    assert body["versions"][1]["config"]["memory_mb"] == 2048
    listed = {i["name"]: i for i in client.get("/templates", headers=auth()).json()["items"]}
    assert listed["gold"]["latestVersion"] == 3


def test_a_taken_name_is_409_and_an_unknown_template_404(client: TestClient) -> None:
    publish(client, "gold", {})
    again = client.post("/admin/templates", json={"name": "gold", "config": {}}, headers=auth())
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    default = client.post("/admin/templates", json={"name": "default"}, headers=auth())
    assert default.status_code == 409
    missing = client.post("/admin/templates/nope/versions", json={"config": {}}, headers=auth())
    assert missing.status_code == 404
    assert client.get("/templates/nope", headers=auth()).status_code == 404


def test_bad_names_and_configs_are_422_naming_the_field(client: TestClient) -> None:
    for name in ("Gold", "gold-", "gold\n", "a" * 13, "9gold"):
        response = client.post("/admin/templates", json={"name": name}, headers=auth())
        assert response.status_code == 422, name
        assert response.json()["errors"][0]["loc"] == ["body", "name"]
    response = client.post(
        "/admin/templates", json={"name": "gold", "config": {"memory_mb": 64}}, headers=auth()
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "config", "memory_mb"]
    assert "config.memory_mb" in response.json()["detail"]
    assert client.get("/templates/gold", headers=auth()).status_code == 404  # nothing created
    publish(client, "gold", {})
    response = client.post(
        "/admin/templates/gold/versions", json={"config": {"colour": "red"}}, headers=auth()
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "config", "colour"]
    assert client.get("/templates/gold", headers=auth()).json()["latestVersion"] == 1


def test_tenant_keys_read_templates_but_cannot_publish(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 1024})
    key = create_api_key(client, "tenant:acme")
    assert client.get("/templates", headers=auth(key)).status_code == 200
    assert client.get("/templates/gold", headers=auth(key)).json()["latestVersion"] == 1
    response = client.post("/admin/templates", json={"name": "mine"}, headers=auth(key))
    assert response.status_code == 403
    response = client.post("/admin/templates/gold/versions", json={}, headers=auth(key))
    assert response.status_code == 403
    assert client.get("/templates/gold", headers=auth()).json()["latestVersion"] == 1
    assert client.get("/templates").status_code == 401
