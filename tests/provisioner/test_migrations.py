"""Migrations of a registry written by an earlier release: the indexes of added columns."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Table, create_engine, inspect

from provisioner.config import Settings
from provisioner.db import Database
from provisioner.migrations import ADDED_COLUMNS, migrate
from provisioner.operations.models import OperationRow


def _old_operations_table(url: str) -> None:
    """The operations table as first released: without the columns (and indexes) added since."""
    added = {step.column for step in ADDED_COLUMNS if step.table == "operations"}
    metadata = MetaData()
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in OperationRow.__table__.columns
        if c.name not in added
    ]
    engine = create_engine(url)
    Table("operations", metadata, *columns).create(engine)
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
