"""API keys: generation, hashing, scopes, and the bootstrap admin key.

Keys are 256-bit random tokens, so a single SHA-256 is a sound way to store them (there is
nothing to brute-force); only the hash and a short display prefix are kept.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

import structlog

from provisioner.auth.models import ApiKeyRow
from provisioner.auth.repository import ApiKeyRepository
from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)
from stacks.config import TENANT_PATTERN

log = structlog.get_logger(__name__)

KEY_PREFIX: Final = "mdp_"
ADMIN_SCOPE: Final = "admin"
TENANT_SCOPE_PREFIX: Final = "tenant:"
BOOTSTRAP_KEY_ID: Final = "bootstrap-admin"
BOOTSTRAP_KEY_FILE: Final = "admin.key"
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key's id and scope."""

    key_id: str
    scope: str

    @property
    def is_admin(self) -> bool:
        return self.scope == ADMIN_SCOPE

    @property
    def tenant(self) -> str | None:
        """The tenant a tenant-scoped key is limited to; None for admin keys."""
        return None if self.is_admin else self.scope.removeprefix(TENANT_SCOPE_PREFIX)

    def can_see(self, tenant: str) -> bool:
        return self.is_admin or self.tenant == tenant


SCOPE_RULE: Final = 'must be "admin" or "tenant:<tenant id>"'


def is_valid_scope(scope: str) -> bool:
    return scope == ADMIN_SCOPE or (
        scope.startswith(TENANT_SCOPE_PREFIX)
        and TENANT_PATTERN.fullmatch(scope.removeprefix(TENANT_SCOPE_PREFIX)) is not None
    )


def validate_scope(scope: str) -> str:
    if not is_valid_scope(scope):
        raise InvalidRequestError(f"scope {SCOPE_RULE}")
    return scope


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


class ApiKeys:
    """Creating, revoking and checking keys."""

    def __init__(self, repository: ApiKeyRepository) -> None:
        self.repository = repository

    def create(self, scope: str, description: str, created_by: str | None) -> tuple[ApiKeyRow, str]:
        key = generate_key()
        row = ApiKeyRow(
            id=str(uuid.uuid4()),
            key_hash=hash_key(key),
            prefix=_display_prefix(key),
            scope=validate_scope(scope),
            description=description,
            created_by=created_by,
            created_at=utcnow(),
        )
        self.repository.add(row)
        return row, key

    def revoke(self, key_id: str) -> ApiKeyRow:
        row = self.repository.get(key_id)
        if row is None:
            raise NotFoundError(f"API key {key_id} not found")
        if row.revoked_at is None:
            if row.scope == ADMIN_SCOPE and self.repository.active_admin_ids(ADMIN_SCOPE) == [
                row.id
            ]:
                raise ConflictError(
                    f"API key {key_id} is the last active admin key; create another admin key "
                    "first (PROVISIONER_ADMIN_KEY restores access at the next start)"
                )
            row.revoked_at = utcnow()
        return row

    def authenticate(self, presented: str) -> tuple[Principal, bool]:
        """The key's principal, and whether its `last_used_at` is due an update (kept to the
        minute: a write on every request would cost every read)."""
        row = self.repository.by_hash(hash_key(presented))
        if row is None or row.revoked_at is not None:
            raise AuthenticationError("invalid or revoked API key")
        stale = row.last_used_at is None or utcnow() - row.last_used_at > LAST_USED_RESOLUTION
        return Principal(key_id=row.id, scope=row.scope), stale


def ensure_bootstrap_admin_key(settings: Settings, database: Database) -> Path | None:
    """Install the bootstrap admin key; returns the file it was written to, if generated.

    With PROVISIONER_ADMIN_KEY set, that key is the admin key. Otherwise (development) a key is
    generated once into DATA_DIR/admin.key with mode 0600 and reused on later starts.
    """
    generated_at: Path | None = None
    if settings.admin_key is not None:
        key = settings.admin_key.get_secret_value()
    else:
        path = settings.data_dir / BOOTSTRAP_KEY_FILE
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            key = path.read_text().strip()
        else:
            key = generate_key()
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(key + "\n")
            generated_at = path.resolve()
    with database.session() as session:
        database.serialize_startup(session)  # replicas starting together insert it once
        repository = ApiKeyRepository(session)
        row = repository.get(BOOTSTRAP_KEY_ID)
        if row is None:
            repository.add(
                ApiKeyRow(
                    id=BOOTSTRAP_KEY_ID,
                    key_hash=hash_key(key),
                    prefix=_display_prefix(key),
                    scope=ADMIN_SCOPE,
                    description="bootstrap admin key",
                    created_at=utcnow(),
                )
            )
        elif settings.admin_key is not None or row.key_hash != hash_key(key):
            # The configured key is the way back in (docs/architecture.md §9): it works again
            # even if it was revoked; a changed one replaces the old, which stops working.
            row.key_hash = hash_key(key)
            row.prefix = _display_prefix(key)
            row.scope = ADMIN_SCOPE
            row.revoked_at = None
    return generated_at
