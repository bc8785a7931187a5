"""A burst of requests with one key costs one registry look-up, and a revoked key is refused
within a second whichever replica revoked it (provisioner.auth.recent)."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from provisioner.auth.models import ApiKeyRow
from provisioner.auth.recent import TTL_S, RecentKeys
from provisioner.auth.repository import ApiKeyRepository
from provisioner.auth.service import ApiKeys, Principal
from provisioner.config import Settings
from provisioner.db import Database
from provisioner.errors import AuthenticationError
from tests.factories import auth, create_api_key


def _key_id(client: TestClient, scope: str) -> str:
    keys = client.get("/admin/api-keys", headers=auth()).json()
    return next(str(key["id"]) for key in keys if key["scope"] == scope)


def test_a_key_revoked_by_another_replica_is_refused_within_a_second(
    client: TestClient, settings: Settings
) -> None:
    key = create_api_key(client, "tenant:acme")
    key_id = _key_id(client, "tenant:acme")
    assert client.get("/environments", headers=auth(key)).status_code == 200
    # Another replica: its own connection to the registry, and its own recent keys.
    replica = Database(settings.resolved_database_url)
    try:
        with replica.session() as session:
            ApiKeys(ApiKeyRepository(session)).revoke(key_id)
        revoked_at = time.monotonic()
        while client.get("/environments", headers=auth(key)).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "a revoked key was still accepted"
            time.sleep(0.01)
        refused_after = time.monotonic() - revoked_at
    finally:
        replica.dispose()
    assert refused_after < 1.0
    assert client.get("/environments", headers=auth(key)).status_code == 401


def test_a_key_revoked_through_this_replica_is_refused_at_once(client: TestClient) -> None:
    key = create_api_key(client, "tenant:acme")
    for _ in range(5):  # remembered now
        assert client.get("/environments", headers=auth(key)).status_code == 200
    revoked = client.delete(f"/admin/api-keys/{_key_id(client, 'tenant:acme')}", headers=auth())
    assert revoked.status_code == 200
    assert client.get("/environments", headers=auth(key)).status_code == 401


def test_a_remembered_key_expires_after_its_ttl() -> None:
    recent = RecentKeys(ttl_s=0.2)
    principal = Principal(key_id="k", scope="admin")
    recent.remember("hash", principal, time.monotonic())
    assert recent.get("hash") == principal
    assert recent.get("other") is None
    deadline = time.monotonic() + 5
    while recent.get("hash") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Remembered from when the look-up began: a slow look-up does not extend the entry.
    recent.remember("hash", principal, time.monotonic() - 0.2)
    assert recent.get("hash") is None
    assert TTL_S <= 0.5


def test_a_burst_with_one_key_looks_it_up_about_once_per_ttl(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = 0
    by_hash = ApiKeyRepository.by_hash

    def counted(self: ApiKeyRepository, key_hash: str) -> ApiKeyRow | None:
        nonlocal lookups
        lookups += 1
        return by_hash(self, key_hash)

    monkeypatch.setattr(ApiKeyRepository, "by_hash", counted)
    started = time.monotonic()
    for _ in range(30):
        assert client.get("/environments", headers=auth()).status_code == 200
    elapsed = time.monotonic() - started
    assert 1 <= lookups <= 1 + elapsed / TTL_S


def test_concurrent_requests_with_one_key_share_one_look_up() -> None:
    recent = RecentKeys()
    principal = Principal(key_id="k", scope="admin")
    calls = 0

    async def look_up() -> Principal:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return principal

    async def refused() -> Principal:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise AuthenticationError("invalid or revoked API key")

    async def burst() -> None:
        found = await asyncio.gather(*(recent.principal("hash", look_up) for _ in range(20)))
        assert found == [principal] * 20
        outcomes = await asyncio.gather(
            *(recent.principal("wrong", refused) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(outcome, AuthenticationError) for outcome in outcomes)

    # Its own loop, closed after, rather than asyncio.run: that leaves the main thread with no
    # current loop, which Pulumi's mocks (tests/stacks, same xdist worker) rely on.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(burst())
    finally:
        loop.close()
    assert calls == 2
    assert recent.get("hash") == principal
    assert recent.get("wrong") is None  # a refusal is never remembered
