"""Readiness, metrics and the admin summary."""

from __future__ import annotations

from fastapi.testclient import TestClient

from provisioner.versions import service_code_version
from tests.factories import auth, environment_body, wait_for_operation


def test_readyz_reports_registry_and_engine(client: TestClient) -> None:
    response = client.get("/readyz", headers=auth())
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["registry"]["ok"] is True
    assert checks["engine"] == {"ok": True, "detail": "scripted engine", "name": "scripted"}
    assert response.json()["codeVersion"] == service_code_version()


def test_metrics_count_operations_and_environments(client: TestClient) -> None:
    ok = client.post("/environments", json=environment_body(name="ok"), headers=auth()).json()
    bad = client.post(
        "/environments", json=environment_body(name="bad", script={"fail-at": "1"}), headers=auth()
    ).json()
    wait_for_operation(client, ok["id"])
    wait_for_operation(client, bad["id"])
    text = client.get("/metrics", headers=auth()).text
    assert 'provisioner_operations_total{kind="create",result="SUCCEEDED"} 1.0' in text
    assert 'provisioner_operations_total{kind="create",result="FAILED"} 1.0' in text
    assert 'provisioner_environments{state="READY"} 1.0' in text
    assert 'provisioner_environments{state="FAILED"} 1.0' in text
    assert 'provisioner_operation_duration_seconds_count{kind="create"} 2.0' in text


def test_summary_counts(client: TestClient) -> None:
    operation = client.post("/environments", json=environment_body(), headers=auth()).json()
    wait_for_operation(client, operation["id"])
    summary = client.get("/admin/summary", headers=auth()).json()
    assert summary == {
        "environmentsByState": {"READY": 1},
        "activeOperationsByKind": {},
        "operationsQueued": 0,
        "operationsRunning": 0,
        "engine": "scripted",
        "codeVersion": service_code_version(),
    }


def test_method_not_allowed_names_the_methods_and_head_health_works(client: TestClient) -> None:
    response = client.put("/environments", headers=auth())
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert client.delete("/healthz").headers["Allow"] == "GET, HEAD"
    assert client.head("/healthz").status_code == 200


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert {"HTTPBearer": []} in document["paths"]["/environments"]["get"]["security"]
    assert "security" not in document["paths"]["/healthz"]["get"]
