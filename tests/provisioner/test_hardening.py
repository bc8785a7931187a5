"""docs/architecture.md §9 on the API: body cap, last admin key, audit and error hygiene, HEAD,
the private data dir, streams that end with their key, and a cancelled retry that says why."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import Base, Database
from tests.e2e.service import serve
from tests.factories import (
    auth,
    create_api_key,
    environment_body,
    sse_events,
    wait_for_operation,
)
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

MIB = 1024 * 1024


# --- 1. the body cap ---


def test_bodies_over_the_cap_are_refused_before_auth(client: TestClient) -> None:
    declared = client.post(
        "/environments", content=b"x" * (3 * MIB), headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.json() == {
        "error": "payload_too_large",
        "detail": "the request body exceeds 1048576 bytes",
    }

    def chunks() -> Iterator[bytes]:
        for _ in range(48):  # 3 MiB, without a Content-Length
            yield b"x" * 65536

    chunked = client.post("/environments", content=chunks())
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error"] == "payload_too_large"
    # A body under the cap still reaches auth.
    assert client.post("/environments", json=environment_body()).status_code == 401
    created = client.post("/environments", json=environment_body(), headers=auth())
    assert created.status_code == 202, created.text


# --- 4. the last admin key ---


def test_the_last_active_admin_key_cannot_be_revoked(client: TestClient) -> None:
    refused = client.delete("/admin/api-keys/bootstrap-admin", headers=auth())
    assert refused.status_code == 409, refused.text
    assert "last active admin key" in refused.json()["detail"]
    second = create_api_key(client, "admin")
    second_id = next(
        key["id"]
        for key in client.get("/admin/api-keys", headers=auth()).json()
        if key["id"] != "bootstrap-admin" and key["scope"] == "admin"
    )
    revoked = client.delete("/admin/api-keys/bootstrap-admin", headers=auth(second))
    assert revoked.status_code == 200, revoked.text
    assert client.get("/environments", headers=auth()).status_code == 401
    # Now the second key is the last one.
    again = client.delete(f"/admin/api-keys/{second_id}", headers=auth(second))
    assert again.status_code == 409
    assert client.get("/environments", headers=auth(second)).status_code == 200


def test_the_configured_admin_key_restores_access_after_a_revocation(settings: Settings) -> None:
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        second = create_api_key(client, "admin")
        revoked = client.delete("/admin/api-keys/bootstrap-admin", headers=auth(second))
        assert revoked.status_code == 200
        assert client.get("/environments", headers=auth()).status_code == 401
    # The next start, with the same PROVISIONER_ADMIN_KEY: it works again.
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        assert client.get("/environments", headers=auth()).status_code == 200
        keys = {key["id"]: key for key in client.get("/admin/api-keys", headers=auth()).json()}
        assert keys["bootstrap-admin"]["revokedAt"] is None


# --- 5. audit and error reasons ---


def test_a_refused_tenant_equal_to_a_key_is_stored_nowhere(
    client: TestClient, settings: Settings
) -> None:
    key = create_api_key(client, "tenant:acme")
    refused = client.post("/environments", json={"tenant": key, "name": "dev"}, headers=auth())
    assert refused.status_code == 422
    assert ["body", "tenant"] in [error["loc"] for error in refused.json()["errors"]]
    refused_scope = client.post("/admin/api-keys", json={"scope": f"tenant:{key}"}, headers=auth())
    assert refused_scope.status_code == 422
    assert client.delete(f"/admin/api-keys/{key}", headers=auth()).status_code == 404
    audit = client.get("/admin/audit", headers=auth()).json()
    assert len(audit["items"]) >= 3
    assert key not in json.dumps(audit)
    database = Database(settings.resolved_database_url)
    try:
        with database.session(readonly=True) as session:
            for table in Base.metadata.sorted_tables:
                rows = session.execute(select(table)).all()
                assert key not in repr(rows), table.name
    finally:
        database.dispose()


SIGNED_REQUEST = (
    "An error occurred (500) when calling the CreateBucket operation: "
    "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261201/xx-fake-1/s3/"
    "aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef "
    "https://b.s3.amazonaws.com/k?X-Amz-Credential=ASIAIOSFODNN7EXAMPLE%2F20261201&"
    "X-Amz-Signature=fedcba9876543210 "
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>Traceback ...</p></body></html>"
)


def test_failure_reasons_mask_signatures_and_drop_html_pages(
    client: TestClient, tmp_path: Path
) -> None:
    error_file = tmp_path / "error.txt"
    error_file.write_text(SIGNED_REQUEST)
    body = environment_body(script={"error-file": str(error_file)})
    operation = client.post("/environments", json=body, headers=auth()).json()
    finished = wait_for_operation(client, operation["id"])
    assert finished["state"] == "FAILED"
    environment = client.get("/environments/acme/dev", headers=auth()).json()
    with client.stream("GET", f"/operations/{operation['id']}/events", headers=auth()) as stream:
        events = json.dumps(list(sse_events(stream.iter_lines())))
    for text in (finished["error"]["message"], environment["failureReason"], events):
        for secret in ("AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", "0123456789abcdef01"):
            assert secret not in text
        assert "fedcba9876543210" not in text
        assert "<html" not in text
        assert "Traceback" not in text
        assert "Credential=***" in text
        assert "(an HTML error page: 500 Internal" in text


# --- 6. streams end with their key ---


def test_an_event_stream_ends_when_its_key_is_revoked(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url)
    with (
        serve(lambda _port: create_app(settings, engine_reference=SCRIPTED_ENGINE)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        tenant_key = client.post(
            "/admin/api-keys", json={"scope": "tenant:acme"}, headers=auth()
        ).json()["key"]
        body = environment_body(script={"gate": str(tmp_path / "never")})
        operation = client.post("/environments", json=body, headers=auth()).json()
        received: list[dict[str, object]] = []
        ended = threading.Event()

        def follow() -> None:
            path = f"/operations/{operation['id']}/events"
            with client.stream("GET", path, headers=auth(tenant_key)) as stream:
                for event in sse_events(stream.iter_lines()):
                    received.append(event)
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        deadline = time.monotonic() + 10
        while not received:
            assert time.monotonic() < deadline, "the stream delivered nothing"
            time.sleep(0.05)
        key_id = next(
            key["id"]
            for key in client.get("/admin/api-keys", headers=auth()).json()
            if key["scope"] == "tenant:acme"
        )
        revoked_at = time.monotonic()
        assert client.delete(f"/admin/api-keys/{key_id}", headers=auth()).status_code == 200
        assert ended.wait(8), "the stream outlived its key"
        assert time.monotonic() - revoked_at < 6
        # The operation itself goes on (it is still running for the admin).
        state = client.get(f"/operations/{operation['id']}", headers=auth()).json()["state"]
        assert state == "RUNNING"
        client.post(f"/operations/{operation['id']}/cancel", headers=auth())


# --- 7. HEAD ---


def test_head_is_served_wherever_get_is_after_auth(client: TestClient) -> None:
    operation = client.post("/environments", json=environment_body(), headers=auth()).json()
    wait_for_operation(client, operation["id"])
    for path in (
        "/readyz",
        "/environments",
        "/environments/acme/dev",
        "/environments/acme/dev/operations",
        "/operations",
        f"/operations/{operation['id']}",
        f"/operations/{operation['id']}/events",
        "/admin/api-keys",
        "/metrics",
    ):
        anonymous = client.head(path)
        assert anonymous.status_code == 401, path
        assert anonymous.content == b""
        head = client.head(path, headers=auth())
        get = client.get(path, headers=auth())
        assert head.status_code == get.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if "content-length" in get.headers and path != "/metrics":
            assert head.headers["content-length"] == get.headers["content-length"], path
    assert client.head("/healthz").status_code == 200
    # Where there is no GET there is no HEAD, and Allow says so.
    refused = client.head("/environments/acme/dev/refresh", headers=auth())
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "POST"


# --- 8. the data dir ---


def test_the_data_dir_is_private_whoever_creates_its_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, "", admin_key=None)
    assert settings.database_url == ""
    previous = os.umask(0o022)  # what a default shell gives `make run`
    try:
        with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
            key = (data_dir / "admin.key").read_text().strip()
            created = client.post("/environments", json=environment_body(), headers=auth(key))
            wait_for_operation(client, created.json()["id"], key=key)
            names = {path.name for path in data_dir.iterdir()}
            assert {"registry.db", "registry.db-wal", "admin.key"} <= names, names
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            for path in data_dir.iterdir():
                expected = 0o700 if path.is_dir() else 0o600
                assert stat.S_IMODE(path.stat().st_mode) == expected, path.name
    finally:
        os.umask(previous)


# --- 9. a cancelled retry ---


def test_cancelling_a_queued_retry_leaves_the_reason(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, max_concurrent_operations=1)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        failing = environment_body(script={"fail-at": "1"})
        failed = client.post("/environments", json=failing, headers=auth()).json()
        assert wait_for_operation(client, failed["id"])["state"] == "FAILED"
        # Another environment holds the only slot, so the retry stays queued.
        gate = tmp_path / "gate"
        blocker = environment_body("acme", "blocker", script={"gate": str(gate)})
        client.post("/environments", json=blocker, headers=auth())
        retry = client.post("/environments", json=environment_body(), headers=auth()).json()
        assert retry["state"] == "QUEUED"
        cancelled = client.post(f"/operations/{retry['id']}/cancel", headers=auth())
        assert cancelled.json()["state"] == "CANCELLED"
        environment = client.get("/environments/acme/dev", headers=auth()).json()
        assert environment["state"] == "FAILED"
        assert environment["failureReason"] is not None
        assert "cancelled before it started" in environment["failureReason"]
        gate.touch()


def test_a_scope_with_a_trailing_newline_is_refused(client: TestClient) -> None:
    for scope in ("tenant:acme\n", "admin\n", "tenant:"):
        response = client.post("/admin/api-keys", json={"scope": scope}, headers=auth())
        assert response.status_code == 422, scope
        assert ["body", "scope"] in [error["loc"] for error in response.json()["errors"]]


@pytest.mark.parametrize("text", ["ci\x1b[31m", "ci\x00", "ci\u202eic", "two\nlines"])
def test_an_api_key_description_with_control_characters_is_422(
    client: TestClient, text: str
) -> None:
    response = client.post(
        "/admin/api-keys", json={"scope": "tenant:acme", "description": text}, headers=auth()
    )
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "description"]]


def test_a_template_description_may_run_over_lines_but_not_hold_controls(
    client: TestClient,
) -> None:
    lines = client.post(
        "/admin/templates",
        json={"name": "gold", "description": "Gold tier.\n\tLarger functions."},
        headers=auth(),
    )
    assert lines.status_code == 201, lines.text
    escape = client.post(
        "/admin/templates", json={"name": "red", "description": "\x1b[31mred"}, headers=auth()
    )
    assert escape.status_code == 422, escape.text
    assert [e["loc"] for e in escape.json()["errors"]] == [["body", "description"]]


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/a\r\nX-Injected: 1", "https://hooks.example.com/a b"]
)
def test_a_webhook_url_with_spaces_or_line_breaks_is_422(client: TestClient, url: str) -> None:
    response = client.post(
        "/admin/webhooks", json={"url": url, "events": ["files.failed"]}, headers=auth()
    )
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "url"]]
    assert "control characters" in response.text


def test_console_lines_escape_control_characters() -> None:
    from provisioner.logging import escape_control_characters

    line = {"event": "GET /files/\x1b[31mRED\x00\u202e", "exception": "Traceback\n  line"}
    assert escape_control_characters(None, "info", line) == {
        "event": "GET /files/\\x1b[31mRED\\x00\\u202e",
        "exception": "Traceback\n  line",  # a traceback keeps its lines
    }
