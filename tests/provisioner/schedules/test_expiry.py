"""Expiry: expiresAt/ttlMinutes, metadata-only PATCH, the scheduler's warnings and destroys,
two app instances on one registry, and a restart between warning and expiry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.environments.models import EnvironmentRow
from provisioner.operations.models import OperationRow
from provisioner.schedules.scheduler import Scheduler
from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _ready(client: TestClient, **extra: object) -> dict[str, object]:
    created = client.post(
        "/environments", json=environment_body("acme", "dev", **extra), headers=auth()
    )
    assert created.status_code == 202, created.text
    wait_for_operation(client, created.json()["id"])
    body: dict[str, object] = client.get("/environments/acme/dev", headers=auth()).json()
    return body


def test_ttl_counts_from_the_request(client: TestClient) -> None:
    before = utcnow()
    shown = _ready(client, ttlMinutes=90)
    expires = datetime.fromisoformat(str(shown["expiresAt"]).replace("Z", "+00:00"))
    assert before + timedelta(minutes=90) <= expires <= utcnow() + timedelta(minutes=90)


@pytest.mark.parametrize(
    "extra",
    [
        {"ttlMinutes": 0},
        {"ttlMinutes": 10**7},
        {"ttlMinutes": 5, "expiresAt": "2099-01-01T00:00:00Z"},
        {"expiresAt": "2099-01-01T00:00:00"},
        {"expiresAt": "2001-01-01T00:00:00Z"},
        {"expiresAt": "tomorrow"},
    ],
)
def test_bad_expiry_is_422(client: TestClient, extra: dict[str, object]) -> None:
    response = client.post(
        "/environments", json=environment_body("acme", "dev", **extra), headers=auth()
    )
    assert response.status_code == 422, response.text
    assert client.get("/environments/acme/dev", headers=auth()).status_code == 404


def test_an_expiry_with_no_utc_date_is_422_naming_it(client: TestClient) -> None:
    beyond = {"expiresAt": "9999-12-31T23:59:59-05:00"}  # 10000-01-01 in UTC
    created = client.post(
        "/environments", json=environment_body("acme", "dev", **beyond), headers=auth()
    )
    assert created.status_code == 422, created.text
    assert "expiresAt" in created.text
    shown = _ready(client)
    patched = client.patch("/environments/acme/dev", json=beyond, headers=auth())
    assert patched.status_code == 422, patched.text
    assert "expiresAt" in patched.text
    assert client.get("/environments/acme/dev", headers=auth()).json() == shown


def test_metadata_patch_is_200_without_an_operation(client: TestClient) -> None:
    shown = _ready(client)
    assert shown["expiresAt"] is None
    last = shown["lastOperation"]
    patched = client.patch(
        "/environments/acme/dev", json={"expiresAt": "2099-01-01T00:00:00Z"}, headers=auth()
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["expiresAt"] == "2099-01-01T00:00:00Z"
    assert patched.json()["lastOperation"] == last
    both = client.patch(
        "/environments/acme/dev",
        json={"expiresAt": "2099-01-01T00:00:00Z", "ttlMinutes": 5},
        headers=auth(),
    )
    assert both.status_code == 422
    cleared = client.patch("/environments/acme/dev", json={"expiresAt": None}, headers=auth())
    assert cleared.status_code == 200
    assert cleared.json()["expiresAt"] is None
    with_config = client.patch(
        "/environments/acme/dev", json={"ttlMinutes": 30, "tags": {"a": "b"}}, headers=auth()
    )
    assert with_config.status_code == 202
    assert with_config.json()["kind"] == "update"


def test_expired_environment_is_destroyed_by_system(client: TestClient) -> None:
    _ready(client, ttlMinutes=120)
    scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
    now = utcnow()
    first = scheduler.tick(now + timedelta(minutes=61))
    assert [lead for _, lead in first.warnings] == [60]  # 1440 passed at creation: one warning
    assert scheduler.tick(now + timedelta(minutes=62)).warnings == []
    expired = scheduler.tick(now + timedelta(minutes=121))
    assert len(expired.destroys) == 1
    assert scheduler.tick(now + timedelta(minutes=122)).destroys == []
    operation = wait_for_operation(client, expired.destroys[0])
    assert operation["kind"] == "destroy"
    assert operation["requestedBy"] == "system"
    assert operation["state"] == "SUCCEEDED"
    events = client.get("/environments/acme/dev/operations", headers=auth()).json()
    assert events["items"][0]["id"] == operation["id"]
    first_event = _first_event(client, operation["id"])
    assert "expired" in first_event
    listed = client.get("/environments?tenant=acme", headers=auth()).json()["items"]
    assert [(item["name"], item["state"]) for item in listed] == [("dev", "DESTROYED")]


def _first_event(client: TestClient, operation_id: str) -> str:
    with client.stream("GET", f"/operations/{operation_id}/events", headers=auth()) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                return line
    raise AssertionError("no event")


class FakeClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def two_apps(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[TestClient, TestClient, FakeClock]]:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL registry; the SQLite variant is the restart test")
    clock = FakeClock()
    settings = [
        make_settings(tmp_path / f"data{i}", database_url, schedule_interval_s=0.05) for i in (1, 2)
    ]
    apps = [create_app(s, engine_reference=SCRIPTED_ENGINE, clock=clock) for s in settings]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        yield one, two, clock


def _tick_together(barrier: threading.Barrier, scheduler: Scheduler) -> None:
    barrier.wait()
    scheduler.tick()


@pytest.mark.postgres
def test_two_replicas_destroy_once_and_warn_once(
    two_apps: tuple[TestClient, TestClient, FakeClock],
) -> None:
    one, two, clock = two_apps
    created = one.post(
        "/environments", json=environment_body("acme", "dev", ttlMinutes=2000), headers=auth()
    )
    wait_for_operation(one, created.json()["id"])
    schedulers = [c.app.state.services.scheduler for c in (one, two)]  # type: ignore[attr-defined]
    start = clock.now
    for minutes in (600, 1941, 1950, 2001, 2005):
        clock.now = start + timedelta(minutes=minutes)
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=_tick_together, args=(barrier, scheduler))
            for scheduler in schedulers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    database = one.app.state.services.database  # type: ignore[attr-defined]
    with database.session(readonly=True) as session:
        env = session.scalars(select(EnvironmentRow)).one()
        destroys = session.scalars(select(OperationRow).where(OperationRow.kind == "destroy")).all()
    # The loops ticked too (every 50 ms, same clock): still one destroy, each warning once.
    assert env.expiry_warnings_sent == [1440, 60]
    assert len(destroys) == 1
    assert destroys[0].requested_by == "system"


def test_restart_neither_repeats_the_warning_nor_loses_the_destroy(settings: Settings) -> None:
    clock = FakeClock()
    start = clock.now
    app = create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)
    with TestClient(app) as client:
        created = client.post(
            "/environments", json=environment_body("acme", "dev", ttlMinutes=90), headers=auth()
        )
        wait_for_operation(client, created.json()["id"])
        clock.now = start + timedelta(minutes=31)
        assert [lead for _, lead in client.app.state.services.scheduler.tick().warnings] == [60]  # type: ignore[attr-defined]
    clock.now = start + timedelta(minutes=45)
    restarted = create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)
    with TestClient(restarted) as client:
        scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
        assert scheduler.tick().warnings == []
        clock.now = start + timedelta(minutes=91)
        destroys = scheduler.tick().destroys
        assert len(destroys) == 1
        assert wait_for_operation(client, destroys[0])["state"] == "SUCCEEDED"
