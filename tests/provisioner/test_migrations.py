"""Migrations of a registry written by an earlier release: the indexes of added columns; and
starts over a complete registry, which run no DDL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import MetaData, create_engine, inspect, make_url, text

from provisioner.config import Settings
from provisioner.db import Database
from provisioner.migrations import migrate
from provisioner.operations.models import OperationRow
from tests.factories import as_first_released
from tests.provisioner.conftest import POSTGRES_URL


def _old_operations_table(url: str) -> None:
    engine = create_engine(url)
    as_first_released(OperationRow.__table__, MetaData()).create(engine)
    engine.dispose()


def test_an_added_columns_index_is_made_once(settings: Settings) -> None:
    url = settings.resolved_database_url
    _old_operations_table(url)
    database = Database(url)
    database.create_schema()
    indexes = {index["name"] for index in inspect(database.engine).get_indexes("operations")}
    assert "ix_operations_rollout_id" in indexes
    assert migrate(database.engine) == []  # a second start: nothing to add
    database.dispose()


def test_a_new_registry_needs_no_migration(settings: Settings) -> None:
    database = Database(settings.resolved_database_url)
    database.create_schema()
    assert migrate(database.engine) == []
    database.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="PROVISIONER_TEST_DATABASE_URL is not set")
def test_a_role_that_owns_nothing_starts_over_a_complete_registry() -> None:
    """Production may run the service as a role with only USAGE and DML: a start over a
    registry that an owner has made whole runs no DDL."""
    assert POSTGRES_URL is not None
    suffix = uuid.uuid4().hex[:12]
    schema, role = f"test_{suffix}", f"app_{suffix}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    search_path = {"options": f"-csearch_path={schema}"}
    owner_url = make_url(POSTGRES_URL).update_query_dict(search_path)
    role_url = owner_url.set(username=role)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        owner = Database(owner_url.render_as_string(hide_password=False))
        owner.create_schema()
        owner.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            connection.execute(
                text(
                    f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}"'
                    f' TO "{role}"'
                )
            )
            connection.execute(
                text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
            )
        database = Database(role_url.render_as_string(hide_password=False))
        database.create_schema()
        database.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            if connection.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
            ).scalar():
                connection.execute(text(f'DROP OWNED BY "{role}"'))
                connection.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
