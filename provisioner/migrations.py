"""Additive schema migrations of an existing registry.

The registry's tables come from `Base.metadata.create_all`, which creates missing tables but
never changes an existing one. So a column added to a table after its first release is listed
here, with the statement that fills it in on rows written before it existed; `migrate` adds
whatever an opened registry lacks, idempotently, and is run after `create_all` at every start.
Replicas starting at once on PostgreSQL serialise on an advisory lock (and `IF NOT EXISTS`);
SQLite's immediate transactions serialise them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog
from sqlalchemy import Connection, Engine, inspect, text

log = structlog.get_logger(__name__)

# Serialises migrations across replicas on PostgreSQL (an arbitrary, fixed advisory-lock key).
_MIGRATION_LOCK_KEY: Final = 0x6D64706D


@dataclass(frozen=True)
class AddedColumn:
    table: str
    column: str
    # The column's DDL after its name; portable between SQLite and PostgreSQL.
    definition: str
    # Fills the column in on rows that predate it (None: the DDL default is right).
    backfill: str | None = None
    # The model declares `index=True`: the index create_all would have made (`ix_table_column`).
    indexed: bool = False


# The tables with a `revision` column (provisioner.db.revision_column): what the environment
# list is made of (provisioner.environments.listing).
REVISED_TABLES: Final = ("environments", "operations", "environment_health")

ADDED_COLUMNS: Final[tuple[AddedColumn, ...]] = (
    # Templates (docs/architecture.md §7): an environment created before them counts as
    # `default@1` with its whole config as its own overrides.
    AddedColumn("environments", "template_name", "VARCHAR(12) NOT NULL DEFAULT 'default'"),
    AddedColumn("environments", "template_version", "INTEGER NOT NULL DEFAULT 1"),
    AddedColumn(
        "environments",
        "config_overrides",
        "JSON",
        "UPDATE environments SET config_overrides = config WHERE config_overrides IS NULL",
    ),
    AddedColumn("environments", "code_version", "VARCHAR(12)"),
    # Expiry and protection (docs/architecture.md §8): nothing expires, nothing is protected.
    AddedColumn("environments", "expires_at", "TIMESTAMP WITH TIME ZONE"),
    AddedColumn("environments", "expiry_warnings_sent", "JSON NOT NULL DEFAULT '[]'"),
    AddedColumn("environments", "expired_at", "TIMESTAMP WITH TIME ZONE"),
    AddedColumn("environments", "protected", "BOOLEAN NOT NULL DEFAULT false"),
    # Drift (docs/architecture.md §8): never checked.
    AddedColumn("environments", "drift_status", "VARCHAR(8) NOT NULL DEFAULT 'UNKNOWN'"),
    AddedColumn("environments", "drift_checked_at", "TIMESTAMP WITH TIME ZONE"),
    AddedColumn("environments", "drift_changes", "JSON NOT NULL DEFAULT '[]'"),
    AddedColumn("environments", "drift_operation_id", "VARCHAR(36)"),
    AddedColumn("environments", "drift_check_minutes", "INTEGER"),
    AddedColumn("environments", "drift_remediate", "BOOLEAN NOT NULL DEFAULT false"),
    AddedColumn("environments", "drift_due_at", "TIMESTAMP WITH TIME ZONE"),
    AddedColumn("environments", "drift_remediated_for", "VARCHAR(36)"),
    # Approvals: operations written before them needed none.
    AddedColumn("operations", "approval_required", "BOOLEAN NOT NULL DEFAULT false"),
    AddedColumn("operations", "approved_by", "VARCHAR(64)"),
    AddedColumn("operations", "preview", "JSON"),
    AddedColumn("operations", "preview_fingerprint", "VARCHAR(64)"),
    AddedColumn("operations", "awaiting_since", "TIMESTAMP WITH TIME ZONE"),
    # Rollouts (docs/architecture.md §7): operations written before them belong to none.
    AddedColumn("operations", "rollout_id", "VARCHAR(36)", indexed=True),
    # Row revisions (provisioner.db.revision_column), kept by the triggers below.
    *(AddedColumn(table, "revision", "INTEGER NOT NULL DEFAULT 0") for table in REVISED_TABLES),
)

# The one-active-operation index (operations.models) now also covers AWAITING_APPROVAL: an index
# built before that, with the older condition, is rebuilt. SQLite ignores VARCHAR lengths; on
# PostgreSQL the state column is widened for the 17-character state.
_ACTIVE_INDEX: Final = "uq_operation_active_per_environment"
_ACTIVE_STATES_SQL: Final = "state IN ('QUEUED', 'RUNNING', 'AWAITING_APPROVAL')"


def migrate(engine: Engine) -> list[str]:
    """Add the missing columns of `ADDED_COLUMNS` and the one-active-operation index; returns
    the ones added (`table.column`, `table.index`). Creates the missing revision triggers."""
    added: list[str] = []
    with engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        for step in ADDED_COLUMNS:
            if _has_column(connection, step.table, step.column):
                continue
            exists = "IF NOT EXISTS " if postgres else ""
            connection.execute(
                text(f"ALTER TABLE {step.table} ADD COLUMN {exists}{step.column} {step.definition}")
            )
            if step.backfill is not None:
                connection.execute(text(step.backfill))
            added.append(f"{step.table}.{step.column}")
        for step in ADDED_COLUMNS:
            if step.indexed and _create_column_index(connection, step.table, step.column):
                added.append(f"{step.table}.ix_{step.table}_{step.column}")
        if _rebuild_active_index(connection, postgres):
            added.append(f"operations.{_ACTIVE_INDEX}")
        # Also on a new registry (create_all makes no triggers): so not a migration to report.
        triggers = _create_revision_triggers(connection, postgres)
    if added:
        log.warning("db.migrated", columns=added)
    if triggers:
        log.info("db.revision_triggers_created", triggers=triggers)
    return added


def _rebuild_active_index(connection: Connection, postgres: bool) -> bool:
    inspector = inspect(connection)
    if not inspector.has_table("operations"):
        return False
    if postgres:
        definition = connection.execute(
            text(
                "SELECT indexdef FROM pg_indexes"
                " WHERE indexname = :name AND schemaname = current_schema()"
            ),
            {"name": _ACTIVE_INDEX},
        ).scalar()
    else:
        definition = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"),
            {"name": _ACTIVE_INDEX},
        ).scalar()
    if definition is not None and "AWAITING_APPROVAL" in str(definition):
        return False
    if postgres:
        connection.execute(text("ALTER TABLE operations ALTER COLUMN state TYPE VARCHAR(24)"))
    connection.execute(text(f"DROP INDEX IF EXISTS {_ACTIVE_INDEX}"))
    connection.execute(
        text(
            f"CREATE UNIQUE INDEX {_ACTIVE_INDEX} ON operations (environment_id) "
            f"WHERE {_ACTIVE_STATES_SQL}"
        )
    )
    return True


# PostgreSQL: a BEFORE trigger sets the new row's revision. SQLite cannot assign NEW, so an
# AFTER trigger updates the row again (triggers do not fire recursively by default, and the
# guard stops them if they did); SQLite counts only the outer statement's rows, so a
# compare-and-set's rowcount is unchanged either way.
_BUMP_FUNCTION: Final = """
CREATE OR REPLACE FUNCTION registry_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$"""


def _create_revision_triggers(connection: Connection, postgres: bool) -> list[str]:
    """The triggers that keep `REVISED_TABLES`' revisions; returns those created. Over a
    registry that has them, no DDL: the service may run as a role that owns nothing."""
    inspector = inspect(connection)
    missing = [
        table
        for table in REVISED_TABLES
        if inspector.has_table(table) and not _has_trigger(connection, table, postgres)
    ]
    if postgres and missing and not _has_bump_function(connection):
        connection.execute(text(_BUMP_FUNCTION))
    for table in missing:
        trigger = f"{table}_revision"
        if postgres:
            connection.execute(
                text(
                    f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION registry_bump_revision()"
                )
            )
        else:
            # `<=`: a write that sets the revision itself (a copy, a restore) cannot move it
            # back to a value an earlier version of the row had.
            connection.execute(
                text(
                    f"CREATE TRIGGER {trigger} AFTER UPDATE ON {table} FOR EACH ROW"
                    " WHEN NEW.revision <= OLD.revision BEGIN"
                    f" UPDATE {table} SET revision = OLD.revision + 1 WHERE rowid = NEW.rowid;"
                    " END"
                )
            )
    return [f"{table}.{table}_revision" for table in missing]


def _has_trigger(connection: Connection, table: str, postgres: bool) -> bool:
    name = f"{table}_revision"
    if postgres:
        found = connection.execute(
            text(
                "SELECT 1 FROM pg_trigger"
                " WHERE tgname = :name AND tgrelid = CAST(:table AS regclass)"
            ),
            {"name": name, "table": table},
        )
    else:
        found = connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
            {"name": name},
        )
    return found.scalar() is not None


def _has_bump_function(connection: Connection) -> bool:
    found = connection.execute(
        text(
            "SELECT 1 FROM pg_proc JOIN pg_namespace ON pg_namespace.oid = pg_proc.pronamespace"
            " WHERE proname = 'registry_bump_revision' AND nspname = current_schema()"
        )
    )
    return found.scalar() is not None


def _create_column_index(connection: Connection, table: str, column: str) -> bool:
    """The index of an added column, unless the registry has it (looked up first, so that a
    start over a complete registry runs no DDL)."""
    inspector = inspect(connection)
    if not inspector.has_table(table):
        return False
    name = f"ix_{table}_{column}"
    if any(index["name"] == name for index in inspector.get_indexes(table)):
        return False
    connection.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})"))
    return True


def _has_column(connection: Connection, table: str, column: str) -> bool:
    inspector = inspect(connection)
    if not inspector.has_table(table):
        return True  # create_all makes it whole; nothing to migrate
    return any(info["name"] == column for info in inspector.get_columns(table))
