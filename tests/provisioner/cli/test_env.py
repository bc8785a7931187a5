"""`provisioner env …` against the service (scripted engine): each command's happy path and
the one-line errors a user gets (409, 404, 422 naming the field, bad usage)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.cli.conftest import Outcome

Cli = Callable[..., Outcome]


def _ready(service: TestClient, tenant: str = "acme", name: str = "dev", **script: str) -> None:
    body = environment_body(tenant, name, script=script or None)
    operation = service.post("/environments", json=body, headers=auth()).json()
    assert wait_for_operation(service, operation["id"])["state"] == "SUCCEEDED"


def test_create_sends_config_and_tags_and_says_how_to_follow(cli: Cli, service: TestClient) -> None:
    outcome = cli(
        "env", "create", "acme", "dev", "--region", "eu-west-1",
        "--config", "memory_mb=1024", "--config", "team=quants", "--tag", "owner=ops",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "create acme/dev: operation" in outcome.out
    operation_id = outcome.out.split("operation ")[1].split()[0]
    assert f"provisioner op watch {operation_id}" in outcome.err
    environment = service.get("/environments/acme/dev", headers=auth()).json()
    assert environment["region"] == "eu-west-1"
    assert environment["config"]["memory_mb"] == 1024
    assert environment["config"]["team"] == "quants"
    assert environment["tags"] == {"owner": "ops"}


def test_create_wait_shows_progress_and_the_result(cli: Cli) -> None:
    outcome = cli("env", "create", "acme", "dev", "--tag", "script-resources=4", "--wait")
    assert outcome.code == 0, outcome.err
    assert "SUCCEEDED (create 4)" in outcome.out
    for index in range(1, 5):
        assert f"resource-{index} created" in outcome.err
    assert "operation succeeded" in outcome.err


def test_create_wait_on_a_failing_operation_exits_3_with_the_reason(cli: Cli) -> None:
    outcome = cli("env", "create", "acme", "dev", "--tag", "script-fail-at=2", "--wait")
    assert outcome.code == 3
    line = outcome.error_line()
    assert line.startswith("error: operation ")
    assert line.endswith("FAILED: engine_error: resource-2 failed: scripted failure")


def test_create_json_is_the_operation(cli: Cli) -> None:
    outcome = cli("env", "create", "acme", "dev", "--json")
    assert outcome.code == 0, outcome.err
    operation = json.loads(outcome.out)
    assert operation["kind"] == "create"
    assert (operation["tenant"], operation["name"]) == ("acme", "dev")


def test_create_existing_is_a_one_line_conflict(cli: Cli, service: TestClient) -> None:
    _ready(service)
    outcome = cli("env", "create", "acme", "dev")
    assert outcome.code == 1
    assert outcome.error_line() == (
        "error: conflict: environment acme/dev already exists (state READY)"
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["acme", "Dev_1"], "name:"),
        (["acme", "dev", "--config", "memory_mb=64"], "config.memory_mb:"),
        (["acme", "dev", "--region", "moon"], "region:"),
    ],
)
def test_create_invalid_input_names_the_field(cli: Cli, args: list[str], field: str) -> None:
    outcome = cli("env", "create", *args)
    assert outcome.code == 1
    line = outcome.error_line()
    assert line.startswith("error: validation_error: ")
    assert field in line


def test_create_with_a_malformed_option_is_a_usage_error(cli: Cli) -> None:
    outcome = cli("env", "create", "acme", "dev", "--tag", "owner")
    assert outcome.code == 2
    assert outcome.error_line() == "error: --tag 'owner': expected KEY=VALUE"


def test_list_filters_and_pages(cli: Cli, service: TestClient) -> None:
    _ready(service, "acme", "dev")
    _ready(service, "acme", "prod")
    _ready(service, "globex", "dev")
    outcome = cli("env", "list", "--tenant", "acme")
    assert outcome.code == 0, outcome.err
    assert "prod" in outcome.out
    assert "globex" not in outcome.out
    assert "showing 1-2 of 2" in outcome.out
    page = json.loads(cli("env", "list", "--limit", "1", "--offset", "1", "--json").out)
    assert (page["total"], page["offset"], len(page["items"])) == (3, 1, 1)
    assert json.loads(cli("env", "list", "--state", "failed", "--json").out)["total"] == 0


def test_list_with_an_unknown_state_names_the_parameter(cli: Cli) -> None:
    outcome = cli("env", "list", "--state", "sleeping")
    assert outcome.code == 1
    line = outcome.error_line()
    assert line.startswith("error: validation_error: state:")


def test_show_gives_state_config_and_outputs(cli: Cli, service: TestClient) -> None:
    _ready(service)
    outcome = cli("env", "show", "acme", "dev")
    assert outcome.code == 0, outcome.err
    assert "READY" in outcome.out
    assert "memory_mb" in outcome.out
    assert "p-acme-dev:bucketName" in outcome.out
    shown = json.loads(cli("env", "show", "acme", "dev", "--json").out)
    assert shown["outputs"]["bucketName"] == "p-acme-dev:bucketName"


def test_show_unknown_is_a_one_line_404(cli: Cli) -> None:
    outcome = cli("env", "show", "acme", "nope")
    assert outcome.code == 1
    assert outcome.error_line() == "error: not_found: environment acme/nope not found"


def test_update_changes_config_and_tags(cli: Cli, service: TestClient) -> None:
    _ready(service)
    outcome = cli(
        "env", "update", "acme", "dev", "--config", "max_bad_row_ratio=0.05",
        "--tag", "owner=ops", "--wait",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "update acme/dev: operation" in outcome.out
    environment = service.get("/environments/acme/dev", headers=auth()).json()
    assert environment["config"]["max_bad_row_ratio"] == 0.05
    assert environment["tags"] == {"owner": "ops"}


def test_update_errors(cli: Cli, service: TestClient, tmp_path: Path) -> None:
    nothing = cli("env", "update", "acme", "dev")
    assert nothing.code == 2
    assert nothing.error_line().startswith("error: nothing to update")
    _ready(service)
    invalid = cli("env", "update", "acme", "dev", "--config", "memory_mb=1")
    assert invalid.code == 1
    assert "config.memory_mb:" in invalid.error_line()
    # While an operation runs, another one is refused with a 409 naming it.
    gate = tmp_path / "gate"
    body = {"tags": {"script-gate": str(gate)}}
    operation = service.patch("/environments/acme/dev", json=body, headers=auth()).json()
    busy = cli("env", "update", "acme", "dev", "--config", "memory_mb=1024")
    gate.touch()
    assert busy.code == 1
    assert busy.error_line().startswith(
        f"error: conflict: environment acme/dev has an active operation {operation['id']}"
    )
    wait_for_operation(service, operation["id"])


def test_delete_asks_for_the_typed_name(cli: Cli, service: TestClient) -> None:
    _ready(service)
    refused = cli("env", "delete", "acme", "dev", input="dev\n")
    assert refused.code == 1
    assert refused.error_line() == "error: confirmation did not match; acme/dev was not destroyed"
    assert service.get("/environments/acme/dev", headers=auth()).json()["state"] == "READY"

    outcome = cli("env", "delete", "acme", "dev", "--wait", input="acme/dev\n")
    assert outcome.code == 0, outcome.err
    assert "Type acme/dev to confirm" in outcome.err
    assert "SUCCEEDED (delete 3)" in outcome.out
    assert service.get("/environments/acme/dev", headers=auth()).json()["state"] == "DESTROYED"


def test_delete_yes_and_unknown(cli: Cli, service: TestClient) -> None:
    _ready(service)
    outcome = cli("env", "delete", "acme", "dev", "--yes", "--json")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["kind"] == "destroy"
    missing = cli("env", "delete", "acme", "nope", "--yes")
    assert missing.code == 1
    assert missing.error_line() == "error: not_found: environment acme/nope not found"


@pytest.mark.parametrize(("command", "summary"), [("refresh", "refresh"), ("preview", "(same 3)")])
def test_refresh_and_preview(cli: Cli, service: TestClient, command: str, summary: str) -> None:
    _ready(service)
    outcome = cli("env", command, "acme", "dev", "--wait")
    assert outcome.code == 0, outcome.err
    assert "SUCCEEDED" in outcome.out
    assert summary in outcome.out
    service.delete("/environments/acme/dev", headers=auth())
    refused = cli("env", command, "acme", "dev")
    assert refused.code == 1
    assert refused.error_line().startswith("error: conflict: ")


def test_extend_moves_the_expiry_without_an_operation(cli: Cli, service: TestClient) -> None:
    _ready(service)
    before = service.get("/environments/acme/dev", headers=auth()).json()["lastOperation"]["id"]
    outcome = cli("env", "extend", "acme", "dev", "--until", "2099-01-01T00:00:00Z", "--json")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["expiresAt"] == "2099-01-01T00:00:00Z"
    outcome = cli("env", "extend", "acme", "dev", "--ttl-minutes", "30")
    assert outcome.code == 0, outcome.err
    shown = service.get("/environments/acme/dev", headers=auth()).json()
    assert shown["expiresAt"] is not None
    assert shown["expiresAt"] < "2099"
    assert shown["lastOperation"]["id"] == before


def test_extend_needs_exactly_one_of_its_options(cli: Cli, service: TestClient) -> None:
    _ready(service)
    assert cli("env", "extend", "acme", "dev").code != 0
    both = cli(
        "env", "extend", "acme", "dev", "--ttl-minutes", "5", "--until", "2099-01-01T00:00:00Z"
    )
    assert both.code != 0
    past = cli("env", "extend", "acme", "dev", "--until", "2001-01-01T00:00:00Z")
    assert past.code != 0
    assert "expiresAt" in past.err
