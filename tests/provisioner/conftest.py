"""Fixtures for the service tests: settings on a temporary data dir, on SQLite and (when
PROVISIONER_TEST_DATABASE_URL is set) on PostgreSQL, and a running app with the scripted engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from provisioner.app import create_app
from provisioner.config import Settings
from tests.factories import ADMIN_KEY

SCRIPTED_ENGINE = "tests.provisioner.scripted_engine:ScriptedEngine"
POSTGRES_URL = os.environ.get("PROVISIONER_TEST_DATABASE_URL")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not POSTGRES_URL, reason="PROVISIONER_TEST_DATABASE_URL is not set"
                ),
            ],
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh registry database: a SQLite file, or a private schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    assert POSTGRES_URL is not None
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_key": SecretStr(ADMIN_KEY),
        "pulumi_config_passphrase": SecretStr("correct-horse-battery-staple"),
        "heartbeat_interval_s": 0.2,
        "heartbeat_timeout_s": 2.0,
        "cancel_grace_s": 3.0,
        "engine": "pulumi",
        **overrides,
    }
    return Settings.model_validate(values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, engine_reference=SCRIPTED_ENGINE)
    with TestClient(app) as test_client:
        yield test_client
