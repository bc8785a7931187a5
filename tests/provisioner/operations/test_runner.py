"""Operations: failures, conflicts, idempotency, cancel, timeouts, the concurrency limit."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm.attributes import set_committed_value

from provisioner.app import create_app
from provisioner.auth.service import Principal
from provisioner.config import Settings
from provisioner.environments.service import EnvironmentService
from provisioner.operations.models import OperationState
from provisioner.operations.repository import OperationRepository
from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _create(client: TestClient, **kwargs: object) -> dict[str, object]:
    response = client.post("/environments", json=environment_body(**kwargs), headers=auth())  # type: ignore[arg-type]
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def test_engine_failure_fails_the_operation_and_the_environment(client: TestClient) -> None:
    operation = _create(client, script={"resources": "4", "fail-at": "2"})
    finished = wait_for_operation(client, str(operation["id"]))
    assert finished["state"] == "FAILED"
    assert finished["error"] == {
        "code": "engine_error",
        "message": "resource-2 failed: scripted failure",
    }
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["state"] == "FAILED"
    assert "resource-2 failed" in environment["failureReason"]


def test_a_failed_environment_can_be_retried(client: TestClient, tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    operation = _create(client, script={"fail-at": "1", "log": str(log)})
    assert wait_for_operation(client, str(operation["id"]))["state"] == "FAILED"
    retry = _create(client, script={"log": str(log)})
    assert wait_for_operation(client, str(retry["id"]))["state"] == "SUCCEEDED"
    assert client.get("/environments/acme/dev", headers=auth()).json()["state"] == "READY"
    # The retry asked the engine to recover the stack first.
    assert log.read_text().splitlines()[-1] == '{"kind": "create", "recover": true}'


def test_twenty_concurrent_creates_give_exactly_one_operation(client: TestClient) -> None:
    body = environment_body(script={"delay": "0.05"})
    barrier = threading.Barrier(20)

    def post(_: int) -> tuple[int, dict[str, object]]:
        barrier.wait()
        response = client.post("/environments", json=body, headers=auth())
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))
    accepted = [body for status, body in results if status == 202]
    conflicts = [body for status, body in results if status == 409]
    assert len(accepted) == 1, results
    assert len(conflicts) == 19, results
    assert all(c["error"] == "conflict" for c in conflicts)
    # Conflicts name the active operation while it is still active.
    active_id = str(accepted[0]["id"])
    assert any(active_id in str(c["detail"]) for c in conflicts)
    wait_for_operation(client, active_id)
    operations = client.get("/environments/acme/dev/operations", headers=auth()).json()
    assert operations["total"] == 1


def test_second_operation_while_one_is_active_is_refused(
    client: TestClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    operation = _create(client, script={"gate": str(gate)})
    wait_for_operation(client, str(operation["id"]), states=("RUNNING",))
    for method, path in (
        ("PATCH", "/environments/acme/dev"),
        ("DELETE", "/environments/acme/dev"),
        ("POST", "/environments/acme/dev/refresh"),
        ("POST", "/environments/acme/dev/preview"),
    ):
        response = client.request(
            method, path, json={} if method == "PATCH" else None, headers=auth()
        )
        assert response.status_code == 409, (method, path, response.text)
        assert str(operation["id"]) in response.json()["detail"]
    gate.touch()
    assert wait_for_operation(client, str(operation["id"]))["state"] == "SUCCEEDED"


def test_create_of_an_existing_environment_is_a_conflict(client: TestClient) -> None:
    operation = _create(client)
    wait_for_operation(client, str(operation["id"]))
    response = client.post("/environments", json=environment_body(), headers=auth())
    assert response.status_code == 409
    assert response.json() == {
        "error": "conflict",
        "detail": "environment acme/dev already exists (state READY)",
    }


def test_operations_refused_in_the_wrong_state(client: TestClient) -> None:
    assert client.delete("/environments/acme/nope", headers=auth()).status_code == 404
    operation = _create(client)
    wait_for_operation(client, str(operation["id"]))
    destroy = client.delete("/environments/acme/dev", headers=auth()).json()
    wait_for_operation(client, destroy["id"])
    for method, path in (
        ("DELETE", "/environments/acme/dev"),
        ("PATCH", "/environments/acme/dev"),
        ("POST", "/environments/acme/dev/refresh"),
    ):
        response = client.request(
            method, path, json={} if method == "PATCH" else None, headers=auth()
        )
        assert response.status_code == 409, (method, response.text)
        assert "DESTROYED" in response.json()["detail"]
    # A destroyed environment can be created again.
    again = _create(client)
    assert wait_for_operation(client, str(again["id"]))["state"] == "SUCCEEDED"


def test_idempotency_key_returns_the_same_operation(client: TestClient) -> None:
    headers = {**auth(), "Idempotency-Key": "create-acme-dev-1"}
    first = client.post("/environments", json=environment_body(), headers=headers)
    second = client.post("/environments", json=environment_body(), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    wait_for_operation(client, first.json()["id"])
    third = client.post("/environments", json=environment_body(), headers=headers)
    assert third.json()["id"] == first.json()["id"]
    # The same key with a different request is refused rather than silently reused.
    other = client.post("/environments", json=environment_body(name="prod"), headers=headers)
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    # DELETE honours it too.
    delete_headers = {**auth(), "Idempotency-Key": "destroy-acme-dev-1"}
    d1 = client.delete("/environments/acme/dev", headers=delete_headers)
    d2 = client.delete("/environments/acme/dev", headers=delete_headers)
    assert d1.status_code == d2.status_code == 202
    assert d1.json()["id"] == d2.json()["id"]


def test_cancel_a_queued_operation_at_once(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, max_concurrent_operations=1)
    gate = tmp_path / "gate"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        blocker = _create(client, name="blocker", script={"gate": str(gate)})
        wait_for_operation(client, str(blocker["id"]), states=("RUNNING",))
        queued = _create(client, name="queued")
        assert client.get(f"/operations/{queued['id']}", headers=auth()).json()["state"] == "QUEUED"
        response = client.post(f"/operations/{queued['id']}/cancel", headers=auth())
        assert response.status_code == 202
        assert response.json()["state"] == "CANCELLED"
        # A never-created environment is left as not existing.
        assert (
            client.get("/environments/acme/queued", headers=auth()).json()["state"] == "DESTROYED"
        )
        assert client.post(f"/operations/{queued['id']}/cancel", headers=auth()).status_code == 409
        gate.touch()
        assert wait_for_operation(client, str(blocker["id"]))["state"] == "SUCCEEDED"


def test_cancel_a_running_operation_gracefully(client: TestClient, tmp_path: Path) -> None:
    operation = _create(client, script={"gate": str(tmp_path / "never")})
    wait_for_operation(client, str(operation["id"]), states=("RUNNING",))
    response = client.post(f"/operations/{operation['id']}/cancel", headers=auth())
    assert response.status_code == 202
    assert response.json()["cancelRequested"] is True
    finished = wait_for_operation(client, str(operation["id"]))
    assert finished["state"] == "CANCELLED"
    assert finished["error"]["code"] == "cancelled"
    assert finished["error"]["message"].startswith("cancelled")
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["state"] == "FAILED"  # it may be half-built: retry or destroy


def test_an_engine_that_ignores_cancel_is_killed_after_the_grace(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url, cancel_grace_s=0.5)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        operation = _create(client, script={"gate": str(tmp_path / "never"), "ignore-cancel": "1"})
        wait_for_operation(client, str(operation["id"]), states=("RUNNING",))
        client.post(f"/operations/{operation['id']}/cancel", headers=auth())
        finished = wait_for_operation(client, str(operation["id"]))
        assert finished["state"] == "CANCELLED"
        assert "forcefully" in finished["error"]["message"]


def test_an_operation_that_runs_too_long_times_out(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, operation_timeout_s=0.5)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        operation = _create(client, script={"gate": str(tmp_path / "never")})
        finished = wait_for_operation(client, str(operation["id"]))
        assert finished["state"] == "FAILED"
        assert finished["error"]["code"] == "timeout"
        assert finished["error"]["message"].startswith("timed out after 0.5 s")
        environment = client.get("/environments/acme/dev", headers=auth()).json()
        assert environment["state"] == "FAILED"


def test_global_limit_bounds_concurrent_operations(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, max_concurrent_operations=2)
    gate = tmp_path / "gate"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        ids = [
            str(_create(client, name=f"e{i}", script={"gate": str(gate)})["id"]) for i in range(4)
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            summary = client.get("/admin/summary", headers=auth()).json()
            if summary["operationsRunning"] == 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the runner had time to start more if it were going to
        summary = client.get("/admin/summary", headers=auth()).json()
        assert summary["operationsRunning"] == 2
        assert summary["operationsQueued"] == 2
        gate.touch()
        assert [wait_for_operation(client, i)["state"] for i in ids] == ["SUCCEEDED"] * 4


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "Acme", "name": "dev"}, "tenant"),
        ({"tenant": "a-b", "name": "dev"}, "tenant"),
        ({"tenant": "acme", "name": "dev-"}, "name"),
        ({"tenant": "acme", "name": "waytoolongname"}, "name"),
        ({"tenant": "acme", "name": "dev", "region": "moon"}, "region"),
        ({"tenant": "acme", "name": "dev", "config": {"memory_mb": 64}}, "config.memory_mb"),
        ({"tenant": "acme", "name": "dev", "config": {"colour": "red"}}, "config.colour"),
        ({"tenant": "acme", "name": "dev", "tags": {"Tenant": "x"}}, "tags"),
        ({"tenant": "acme"}, "name"),
    ],
)
def test_bad_input_is_rejected_with_the_field_named(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/environments", json=body, headers=auth())
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert field in {".".join(str(p) for p in e["loc"][1:]) for e in payload["errors"]}
    assert field in payload["detail"]
    # Nothing was recorded.
    assert client.get("/environments", headers=auth()).json()["total"] == 0


def test_bad_update_is_rejected_with_the_field_named(client: TestClient) -> None:
    wait_for_operation(client, str(_create(client)["id"]))
    response = client.patch(
        "/environments/acme/dev", json={"config": {"log_retention_days": 8}}, headers=auth()
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "config", "log_retention_days"]
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    assert environment["config"]["log_retention_days"] == 7
    assert environment["lastOperation"]["kind"] == "create"


def test_refresh_and_preview_leave_the_environment_ready(client: TestClient) -> None:
    wait_for_operation(client, str(_create(client)["id"]))
    for action, changes in (("refresh", {"create": 3}), ("preview", {"same": 3})):
        response = client.post(f"/environments/acme/dev/{action}", headers=auth())
        assert response.status_code == 202
        assert response.json()["kind"] == action
        finished = wait_for_operation(client, response.json()["id"])
        assert finished["state"] == "SUCCEEDED"
        assert finished["changes"] == changes
        assert client.get("/environments/acme/dev", headers=auth()).json()["state"] == "READY"


def test_lists_paginate_and_filter(client: TestClient) -> None:
    ids = [str(_create(client, name=f"env{i}")["id"]) for i in range(5)]
    ids.append(str(_create(client, tenant="globex", name="dev", script={"fail-at": "1"})["id"]))
    for operation_id in ids:
        wait_for_operation(client, operation_id)
    page = client.get("/environments?limit=2&offset=0", headers=auth()).json()
    assert page["total"] == 6
    assert len(page["items"]) == 2
    names = [
        item["name"]
        for offset in (0, 2, 4)
        for item in client.get(f"/environments?limit=2&offset={offset}", headers=auth()).json()[
            "items"
        ]
    ]
    assert len(names) == len(set(names)) == 6
    acme = client.get("/environments?tenant=acme", headers=auth()).json()
    assert acme["total"] == 5
    failed = client.get("/environments?state=FAILED", headers=auth()).json()
    assert [(i["tenant"], i["name"]) for i in failed["items"]] == [("globex", "dev")]
    assert client.get("/environments?state=NOPE", headers=auth()).status_code == 422
    assert client.get("/environments?limit=0", headers=auth()).status_code == 422
    operations = client.get("/operations?limit=4", headers=auth()).json()
    assert operations["total"] == 6
    assert len(operations["items"]) == 4


def test_two_apps_in_one_process_keep_their_own_metrics(settings: Settings) -> None:
    # Two apps in one process keep separate metrics registries (no duplicate-series error).
    for _ in range(2):
        with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
            assert client.get("/metrics", headers=auth()).status_code == 200


def test_concurrent_retries_with_one_idempotency_key_all_get_the_operation(
    client: TestClient,
) -> None:
    headers = {**auth(), "Idempotency-Key": "retry-storm"}
    body = environment_body(name="storm")
    barrier = threading.Barrier(12)

    def post(_: int) -> tuple[int, str]:
        barrier.wait()
        response = client.post("/environments", json=body, headers=headers)
        return response.status_code, response.json().get("id", response.json().get("detail"))

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(post, range(12)))
    assert {status for status, _ in results} == {202}, results
    assert len({operation for _, operation in results}) == 1


def test_cancel_of_an_operation_claimed_meanwhile_stops_it_like_a_running_one(
    client: TestClient, tmp_path: Path
) -> None:

    operation = _create(client, script={"gate": str(tmp_path / "never")})
    wait_for_operation(client, str(operation["id"]), states=("RUNNING",))
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.database.session() as session:
        row = OperationRepository(session).get(str(operation["id"]))
        assert row is not None
        # The stale view a cancel request holds when a runner claims the operation right after
        # it read it: QUEUED in memory, RUNNING in the registry.
        set_committed_value(row, "state", OperationState.QUEUED)
        service = EnvironmentService(session, services.settings, services.engine_name)
        cancelled = service.cancel(Principal("bootstrap-admin", "admin"), row.id)
        assert cancelled.state == OperationState.RUNNING
        assert cancelled.cancel_requested is True
    services.runner.request_cancel(str(operation["id"]))
    finished = wait_for_operation(client, str(operation["id"]))
    assert finished["state"] == "CANCELLED"
    # It was running: the environment may be half-built, so it is FAILED, not "never existed".
    assert client.get("/environments/acme/dev", headers=auth()).json()["state"] == "FAILED"
