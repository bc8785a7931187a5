"""The registry: environments, operations and their events, API keys and the audit log, in
SQLAlchemy 2 (SQLite by default, PostgreSQL by URL). All queries live in its repositories."""
