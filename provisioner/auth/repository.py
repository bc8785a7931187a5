"""Queries on API keys (stored as hashes only)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from provisioner.auth.models import ApiKeyRow
from provisioner.db import utcnow


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: ApiKeyRow) -> None:
        self.session.add(row)
        self.session.flush()

    def get(self, key_id: str) -> ApiKeyRow | None:
        return self.session.get(ApiKeyRow, key_id)

    def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        return self.session.scalars(
            select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)
        ).one_or_none()

    def active_admin_ids(self, scope: str) -> list[str]:
        """Ids of unrevoked keys with `scope`, locked until the transaction ends (PostgreSQL),
        so that two concurrent revokes cannot each leave the other as the last one."""
        return list(
            self.session.scalars(
                select(ApiKeyRow.id)
                .where(ApiKeyRow.scope == scope, ApiKeyRow.revoked_at.is_(None))
                .with_for_update()
            ).all()
        )

    def list(self, *, limit: int, offset: int) -> Sequence[ApiKeyRow]:
        return self.session.scalars(
            select(ApiKeyRow)
            .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            .limit(limit)
            .offset(offset)
        ).all()

    def touch(self, key_id: str) -> None:
        self.session.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=utcnow())
        )
