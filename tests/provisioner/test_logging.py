"""No secret (admin key, passphrase, AWS keys, API keys) in any response, event or log line."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from provisioner.app import create_app
from tests.factories import ADMIN_KEY, auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

PASSPHRASE = "correct-horse-battery-staple"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_secrets_never_leave_the_service(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'registry.db'}",
        aws_secret_access_key=SecretStr(AWS_SECRET),
    )
    # The engine repeats every secret in a diagnostic, as a careless CLI might.
    say = tmp_path / "say.txt"
    say.write_text(f"passphrase:{PASSPHRASE} admin:{ADMIN_KEY} aws:{AWS_SECRET}")
    seen: list[str] = []
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        created = client.post("/admin/api-keys", json={"scope": "tenant:acme"}, headers=auth())
        tenant_key = created.json()["key"]
        operation = client.post(
            "/environments",
            json=environment_body(script={"say-file": str(say)}),
            headers=auth(),
        ).json()
        wait_for_operation(client, operation["id"])
        for path in (
            f"/operations/{operation['id']}/events",
            f"/operations/{operation['id']}",
            "/environments/acme/dev",
            "/environments",
            "/admin/api-keys",
            "/admin/audit",
            "/admin/summary",
            "/metrics",
            "/readyz",
            "/openapi.json",
        ):
            response = client.get(path, headers=auth())
            assert response.status_code == 200, path
            seen.append(response.text)
        client.get("/environments", headers=auth(tenant_key))
        client.get("/environments", headers={"Authorization": f"Bearer {ADMIN_KEY}x"})
    events = seen[0]
    assert "passphrase:***" in events
    assert "admin:***" in events
    assert "aws:***" in events
    captured = capfd.readouterr()
    everything = "\n".join([*seen, captured.out, captured.err, caplog.text])
    for secret in (PASSPHRASE, ADMIN_KEY, AWS_SECRET, tenant_key):
        index = everything.find(secret)
        assert index == -1, everything[max(0, index - 300) : index + 60]
    # Keys are stored only as hashes.
    with sqlite3.connect(tmp_path / "registry.db") as connection:
        dump = "\n".join(connection.iterdump())
    assert ADMIN_KEY not in dump
    assert tenant_key not in dump
