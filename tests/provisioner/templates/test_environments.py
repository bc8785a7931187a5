"""Environments on templates: latest and pinned, overrides, moving, outdated, the filter, and
the migration of a registry written before templates existed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, MetaData, create_engine, inspect, text

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.environments.models import EnvironmentRow
from provisioner.versions import service_code_version
from tests.factories import as_first_released, auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE
from tests.provisioner.templates.test_templates import add_version, publish


def create(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/environments", json=environment_body(name=name, **extra), headers=auth()
    )
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    body: dict[str, Any] = client.get(f"/environments/acme/{name}", headers=auth()).json()
    return body


def names(client: TestClient, query: str) -> list[str]:
    response = client.get(f"/environments?{query}", headers=auth())
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_created_from_latest_or_pinned_with_overrides_winning(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 1024, "max_bad_row_ratio": 0.02})
    add_version(client, "gold", {"memory_mb": 2048, "max_bad_row_ratio": 0.02})
    latest = create(client, "latest", template="gold")
    assert latest["template"] == {"name": "gold", "version": 2}
    assert latest["config"]["memory_mb"] == 2048
    assert latest["configOverrides"] == {}
    assert latest["codeVersion"] == service_code_version()
    assert latest["outdated"] is False
    assert latest["outdatedReasons"] == []
    pinned = create(client, "pinned", template="gold@1", config={"max_bad_row_ratio": 0.1})
    assert pinned["template"] == {"name": "gold", "version": 1}
    assert pinned["config"]["memory_mb"] == 1024
    assert pinned["config"]["max_bad_row_ratio"] == 0.1
    assert pinned["configOverrides"] == {"max_bad_row_ratio": 0.1}
    # Pinned to an older version is outdated too: pinning says what it runs, not that it is current.
    assert pinned["outdated"] is True
    assert pinned["outdatedReasons"] == ["template gold@1, latest gold@2"]
    plain = create(client, "plain")
    assert plain["template"] == {"name": "default", "version": 1}
    assert plain["config"] == {**latest["config"], "memory_mb": 512, "max_bad_row_ratio": 0.01}


@pytest.mark.parametrize("reference", ["nope", "gold@9", "gold@0", "gold@", "Gold", "gold@1\n"])
def test_an_unknown_template_is_422_naming_template(client: TestClient, reference: str) -> None:
    publish(client, "gold", {})
    response = client.post(
        "/environments", json=environment_body(template=reference), headers=auth()
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "template"]
    assert client.get("/environments/acme/dev", headers=auth()).status_code == 404


def test_overrides_are_validated_on_top_of_the_template(client: TestClient) -> None:
    publish(client, "gold", {"api_rate_limit": 100, "api_burst_limit": 200})
    # A burst below the default rate (1000) is fine above the template's rate (100).
    ok = create(client, "dev", template="gold", config={"api_burst_limit": 150})
    assert ok["config"]["api_burst_limit"] == 150
    response = client.post(
        "/environments",
        json=environment_body(name="bad", template="gold", config={"memory_mb": 1}),
        headers=auth(),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "config", "memory_mb"]


def test_patch_moves_to_another_template_keeping_overrides(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 1024})
    publish(client, "silver", {"memory_mb": 256, "stage_timeout_s": 60})
    create(client, "dev", template="gold", config={"max_bad_row_ratio": 0.05})
    response = client.patch("/environments/acme/dev", json={"template": "silver"}, headers=auth())
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "update"
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    body = client.get("/environments/acme/dev", headers=auth()).json()
    assert body["template"] == {"name": "silver", "version": 1}
    assert body["config"]["memory_mb"] == 256
    assert body["config"]["stage_timeout_s"] == 60
    assert body["config"]["max_bad_row_ratio"] == 0.05
    assert body["configOverrides"] == {"max_bad_row_ratio": 0.05}
    bad = client.patch("/environments/acme/dev", json={"template": "bronze"}, headers=auth())
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "template"]
    # A config-only PATCH adds to the overrides and stays on the template version.
    response = client.patch(
        "/environments/acme/dev", json={"config": {"memory_mb": 768}}, headers=auth()
    )
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    body = client.get("/environments/acme/dev", headers=auth()).json()
    assert body["template"] == {"name": "silver", "version": 1}
    assert body["configOverrides"] == {"max_bad_row_ratio": 0.05, "memory_mb": 768}


def test_outdated_by_template_and_the_list_filter(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 1024})
    publish(client, "silver", {})
    for name in ("a", "b"):
        create(client, name, template="gold")
    create(client, "c", template="silver")
    assert names(client, "outdated=true") == []
    assert names(client, "outdated=false") == ["a", "b", "c"]
    add_version(client, "gold", {"memory_mb": 2048})
    assert names(client, "outdated=true") == ["a", "b"]
    assert names(client, "outdated=true&template=gold") == ["a", "b"]
    assert names(client, "outdated=true&template=silver") == []
    assert names(client, "outdated=false") == ["c"]
    assert names(client, "template=gold") == ["a", "b"]
    page = client.get("/environments?outdated=true&limit=1", headers=auth()).json()
    assert page["total"] == 2
    assert len(page["items"]) == 1
    assert page["items"][0]["outdatedReasons"] == ["template gold@1, latest gold@2"]
    # Moving one to the latest version makes it current again.
    response = client.patch("/environments/acme/a", json={"template": "gold"}, headers=auth())
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    assert names(client, "outdated=true") == ["b"]
    # A destroyed environment is never outdated.
    response = client.delete("/environments/acme/b", headers=auth())
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    assert names(client, "outdated=true") == []
    assert "b" in names(client, "outdated=false")


def test_outdated_by_code_version(settings: Settings) -> None:
    old, new = "1a2b3c4d5e6f", "6f5e4d3c2b1a"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, code_version=old)) as c:
        assert c.get("/readyz", headers=auth()).json()["codeVersion"] == old
        assert create(c, "dev")["codeVersion"] == old
        create(c, "prod")
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, code_version=new)) as c:
        assert c.get("/admin/summary", headers=auth()).json()["codeVersion"] == new
        body = c.get("/environments/acme/dev", headers=auth()).json()
        assert body["outdated"] is True
        assert body["outdatedReasons"] == [f"code {old}, service {new}"]
        assert names(c, "outdated=true") == ["dev", "prod"]
        # An update applies the service's code; a failed one would not (the version stays).
        failing = c.patch(
            "/environments/acme/prod", json={"tags": {"script-fail-at": "1"}}, headers=auth()
        )
        assert wait_for_operation(c, failing.json()["id"])["state"] == "FAILED"
        assert c.get("/environments/acme/prod", headers=auth()).json()["codeVersion"] == old
        response = c.patch("/environments/acme/dev", json={"tags": {}}, headers=auth())
        assert wait_for_operation(c, response.json()["id"])["state"] == "SUCCEEDED"
        body = c.get("/environments/acme/dev", headers=auth()).json()
        assert body["codeVersion"] == new
        assert body["outdated"] is False
        assert names(c, "outdated=true") == ["prod"]
        assert names(c, "outdated=false") == ["dev"]


def _old_environments_table(url: str) -> None:
    """The environments table as it was first released, with one environment."""
    table = as_first_released(EnvironmentRow.__table__, MetaData())
    engine = create_engine(url)
    table.create(engine)
    with engine.begin() as connection:
        connection.execute(
            table.insert().values(
                id="00000000-0000-0000-0000-000000000001",
                tenant="acme",
                name="old",
                state="READY",
                engine="scripted",
                region="us-east-1",
                config={"memory_mb": 1024},
                tags={},
                outputs={},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    engine.dispose()


def test_an_old_registry_is_migrated_to_default_1_with_its_config_as_overrides(
    settings: Settings,
) -> None:
    url = settings.resolved_database_url
    _old_environments_table(url)
    database = Database(url)
    database.create_schema()
    database.create_schema()  # idempotent: a second start adds nothing
    columns = {c["name"] for c in inspect(database.engine).get_columns("environments")}
    assert {"template_name", "template_version", "config_overrides", "code_version"} <= columns
    database.dispose()
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        body = client.get("/environments/acme/old", headers=auth()).json()
        assert body["template"] == {"name": "default", "version": 1}
        assert body["configOverrides"] == {"memory_mb": 1024}
        assert body["codeVersion"] is None
        assert body["outdatedReasons"] == [f"code none, service {service_code_version()}"]
        assert names(client, "outdated=true") == ["old"]


def test_an_old_registry_gets_revisions_that_the_registry_keeps(settings: Settings) -> None:
    """The revision column is added, and its trigger created once, however often the service
    starts; every UPDATE, whoever writes it, moves the revision on."""
    url = settings.resolved_database_url
    _old_environments_table(url)
    database = Database(url)
    database.create_schema()
    database.create_schema()
    old_id = "00000000-0000-0000-0000-000000000001"
    with database.engine.begin() as connection:
        assert _revision(connection, old_id) == 0
        for reason in ("one", "two"):
            connection.execute(
                text("UPDATE environments SET failure_reason = :reason WHERE id = :id"),
                {"reason": reason, "id": old_id},
            )
        assert _revision(connection, old_id) == 2
        # A compare-and-set still counts the rows it matched, not the trigger's own write.
        matched = connection.execute(
            text("UPDATE environments SET failure_reason = 'three' WHERE id = :id"),
            {"id": old_id},
        )
        assert matched.rowcount == 1
        # A write that sets the revision itself (a copy, a restore) cannot move it back.
        connection.execute(
            text("UPDATE environments SET failure_reason = 'four', revision = 0 WHERE id = :id"),
            {"id": old_id},
        )
        assert _revision(connection, old_id) == 4
    database.dispose()


def _revision(connection: Connection, environment_id: str) -> int:
    revision: int = connection.execute(
        text("SELECT revision FROM environments WHERE id = :id"), {"id": environment_id}
    ).scalar_one()
    return revision
