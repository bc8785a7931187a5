"""`provisioner template …`, `env create --template` and `env list --outdated` (scripted engine)."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.factories import auth, create_api_key, wait_for_operation
from tests.provisioner.cli.conftest import Outcome

Cli = Callable[..., Outcome]


def test_publish_creates_then_adds_versions_list_and_show(cli: Cli, service: TestClient) -> None:
    first = cli("template", "publish", "gold", "--config", "memory_mb=1024", "--description", "v1")
    assert first.code == 0, first.err
    assert "published gold@1" in first.out
    second = cli("template", "publish", "gold", "--config", "memory_mb=2048")
    assert "published gold@2" in second.out
    listed = cli("template", "list")
    assert "gold" in listed.out
    assert "default" in listed.out
    shown = json.loads(cli("template", "show", "gold", "--json").out)
    assert [v["config"]["memory_mb"] for v in shown["versions"]] == [1024, 2048]
    bad = cli("template", "publish", "gold", "--config", "memory_mb=1")
    assert bad.code == 1
    assert "config.memory_mb" in bad.error_line()
    tenant = create_api_key(service, "tenant:acme")
    refused = cli("template", "publish", "mine", key=tenant)
    assert refused.code == 1
    assert "forbidden" in refused.error_line() or "403" in refused.error_line()


def test_env_create_with_template_and_list_outdated(cli: Cli, service: TestClient) -> None:
    cli("template", "publish", "gold", "--config", "memory_mb=1024")
    cli("template", "publish", "gold", "--config", "memory_mb=2048")
    outcome = cli("env", "create", "acme", "dev", "--template", "gold@1", "--wait")
    assert outcome.code == 0, outcome.err
    env = service.get("/environments/acme/dev", headers=auth()).json()
    assert env["template"] == {"name": "gold", "version": 1}
    assert env["config"]["memory_mb"] == 1024
    operation = service.post(
        "/environments", json={"tenant": "acme", "name": "cur", "template": "gold"}, headers=auth()
    ).json()
    wait_for_operation(service, operation["id"])
    outdated = json.loads(cli("env", "list", "--outdated", "--json").out)
    assert [e["name"] for e in outdated["items"]] == ["dev"]
    current = json.loads(cli("env", "list", "--current", "--template", "gold", "--json").out)
    assert [e["name"] for e in current["items"]] == ["cur"]
    table = cli("env", "list").out
    assert "gold@1 outdated" in table
