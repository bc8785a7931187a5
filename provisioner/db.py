"""The registry database: the declarative base, engine, sessions and schema creation.

Each domain's `models.py` declares its tables on `Base`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, Integer, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from provisioner.migrations import migrate


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the registry")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def revision_column() -> Mapped[int]:
    """A row's revision: the registry itself adds one at every UPDATE of the row, whatever
    wrote it (ORM, Core or by hand; the triggers of `provisioner.migrations`), so equal
    revisions of a row mean an unchanged row. Read, never written, by the service."""
    return mapped_column(Integer, nullable=False, default=0, server_default=text("0"))


# An arbitrary, fixed advisory-lock key for start-up (schema, bootstrap key) across replicas.
_STARTUP_LOCK_KEY = 0x6D64705E


class Database:
    """One per process. Sessions are short-lived: one per request or unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # A server's connection can drop while pooled; a SQLite file's cannot, and the
            # ping would be a statement more on every session.
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no write lock on SQLite (a deferred transaction); elsewhere the same.
        self._read_sessions = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    def create_schema(self) -> None:
        _import_models()
        # Replicas starting together would each create the tables; PostgreSQL refuses the
        # second CREATE of a type already being created, so they take turns.
        with self.engine.begin() as connection:
            self.serialize_startup(connection)
            Base.metadata.create_all(connection)
        migrate(self.engine)

    def serialize_startup(self, connection: Session | Connection) -> None:
        """Within a transaction: wait for other replicas' start-up work (PostgreSQL only;
        SQLite's write lock already serializes)."""
        if not self.is_sqlite:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STARTUP_LOCK_KEY}
            )

    def drop_schema(self) -> None:
        Base.metadata.drop_all(self.engine)

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        `readonly` sessions must not write: on SQLite they do not queue for the write lock.
        """
        session = (self._read_sessions if readonly else self._sessions)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.execution_options(sqlite_begin="DEFERRED").connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE by default: take the write lock up front. A deferred transaction that reads,
    # then writes after another connection committed, fails at once (SQLITE_BUSY_SNAPSHOT)
    # instead of waiting; this way writers queue behind the busy timeout. Read-only sessions
    # begin DEFERRED and never wait for writers (WAL).
    mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off (SQLAlchemy's recipe for pysqlite): it
    # begins transactions only before writes, so a SAVEPOINT outside one became a transaction
    # of its own whose RELEASE committed — half of a unit of work visible to others.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; the busy timeout makes concurrent
    # writers (request threads, operation supervisors) wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _import_models() -> None:
    # Tables register on `Base` when their module is imported; the schema needs all of them,
    # whichever domains this process happened to import so far.
    for domain in (
        "environments",
        "operations",
        "auth",
        "audit",
        "tenants",
        "templates",
        "webhooks",
        "monitoring",
        "rollouts",
        "fleet",
    ):
        importlib.import_module(f"provisioner.{domain}.models")
