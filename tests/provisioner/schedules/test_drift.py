"""Scheduled drift checks: `driftCheck` on create and PATCH (422s naming the field), due times
(own interval, the service default, off), remediation by `system`, two app instances on one
PostgreSQL schema (one check per due time), and a restart (due times in the registry)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.operations.models import OperationRow
from provisioner.schedules.drift import check_candidates
from provisioner.schedules.scheduler import Scheduler
from provisioner.schedules.service import TickResult
from provisioner.webhooks.models import DeliveryRow
from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings
from tests.provisioner.webhooks.conftest import FAST_WEBHOOKS, subscribe
from tests.provisioner.webhooks.receiver import Receiver, running_receiver

QUEUE_DRIFT = {
    "resource": "p-acme-dev-ingest.fifo",
    "type": "aws:sqs/queue:Queue",
    "kind": "update",
    "attributes": ["VisibilityTimeout"],
}


class FakeClock:
    def __init__(self) -> None:
        self.start = self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: float) -> datetime:
        self.now = self.start + timedelta(minutes=minutes)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def drift_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    # The loop's own ticks stay out of the way unless a test asks for them.
    values: dict[str, object] = {**FAST_WEBHOOKS, "schedule_interval_s": 3600, **overrides}
    return make_settings(tmp_path / "data", database_url, **values)


@pytest.fixture
def client(tmp_path: Path, database_url: str, clock: FakeClock) -> Iterator[TestClient]:
    settings = drift_settings(tmp_path, database_url, drift_check_minutes=10)
    app = create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def scheduler(client: TestClient) -> Scheduler:
    found: Scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
    return found


def ready(client: TestClient, name: str, drift_file: Path, **extra: Any) -> dict[str, Any]:
    body = environment_body("acme", name, script={"drift-file": str(drift_file)}, **extra)
    response = client.post("/environments", json=body, headers=auth())
    assert response.status_code == 202, response.text
    assert wait_for_operation(client, response.json()["id"])["state"] == "SUCCEEDED"
    shown: dict[str, Any] = client.get(f"/environments/acme/{name}", headers=auth()).json()
    return shown


def tick(client: TestClient, clock: FakeClock, minutes: float) -> TickResult:
    """One tick at `minutes` after the test's start; waits for what it queued to finish."""
    result = scheduler(client).tick(clock.at(minutes))
    for operation_id in [*result.remediations, *result.drift_checks]:
        assert wait_for_operation(client, operation_id)["state"] == "SUCCEEDED"
    return result


def checked(client: TestClient, minutes: float, clock: FakeClock) -> list[str]:
    """The environments the tick at `minutes` queued a drift check for."""
    names = []
    for operation_id in tick(client, clock, minutes).drift_checks:
        names.append(client.get(f"/operations/{operation_id}", headers=auth()).json()["name"])
    return sorted(names)


def drift(client: TestClient, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = client.get(f"/environments/acme/{name}", headers=auth()).json()
    return shown["drift"]


def first_event(client: TestClient, operation_id: str) -> dict[str, Any]:
    with client.stream("GET", f"/operations/{operation_id}/events", headers=auth()) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line.removeprefix("data:"))
                return event
    raise AssertionError("no event")


# --- driftCheck on create and PATCH ------------------------------------------------------


@pytest.mark.parametrize(
    ("drift_check", "field"),
    [
        ({"intervalMinutes": -1}, "intervalMinutes"),
        ({"intervalMinutes": 10**7}, "intervalMinutes"),
        ({"intervalMinutes": "hourly"}, "intervalMinutes"),
        ({"intervalMinutes": 1.5}, "intervalMinutes"),
        ({"remediate": "maybe"}, "remediate"),
        ({"every": 5}, "every"),
        (30, None),
    ],
)
def test_bad_drift_check_is_422_naming_the_field(
    client: TestClient, tmp_path: Path, drift_check: object, field: str | None
) -> None:
    expected = ["body", "driftCheck", *([field] if field else [])]
    created = client.post(
        "/environments",
        json=environment_body("acme", "bad", driftCheck=drift_check),
        headers=auth(),
    )
    assert created.status_code == 422, created.text
    assert [error["loc"] for error in created.json()["errors"]] == [expected]
    assert client.get("/environments/acme/bad", headers=auth()).status_code == 404
    ready(client, "dev", tmp_path / "drift.json")
    patched = client.patch(
        "/environments/acme/dev", json={"driftCheck": drift_check}, headers=auth()
    )
    assert patched.status_code == 422, patched.text
    assert [error["loc"] for error in patched.json()["errors"]] == [expected]


def test_drift_check_patch_is_metadata(client: TestClient, tmp_path: Path) -> None:
    shown = ready(client, "dev", tmp_path / "drift.json", driftCheck={"intervalMinutes": 30})
    assert shown["driftCheck"] == {"intervalMinutes": 30, "remediate": False}
    last = shown["lastOperation"]

    patched = client.patch(
        "/environments/acme/dev", json={"driftCheck": {"remediate": True}}, headers=auth()
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["driftCheck"] == {"intervalMinutes": 30, "remediate": True}
    assert patched.json()["lastOperation"] == last  # no operation
    reset = client.patch("/environments/acme/dev", json={"driftCheck": None}, headers=auth())
    assert reset.status_code == 200
    assert reset.json()["driftCheck"] == {"intervalMinutes": None, "remediate": False}


def test_a_tenant_key_sets_drift_checks_only_on_its_own_environments(
    client: TestClient, tmp_path: Path
) -> None:
    ready(client, "dev", tmp_path / "drift.json")
    other = client.post("/admin/api-keys", json={"scope": "tenant:beta"}, headers=auth())
    key = other.json()["key"]
    body = {"driftCheck": {"intervalMinutes": 1, "remediate": True}}
    response = client.patch("/environments/acme/dev", json=body, headers=auth(key))
    assert response.status_code == 404
    assert drift(client, "dev")["status"] == "UNKNOWN"
    own = client.get("/environments/acme/dev", headers=auth()).json()["driftCheck"]
    assert own == {"intervalMinutes": None, "remediate": False}


# --- due times --------------------------------------------------------------------------


def test_checks_run_at_each_environments_interval(
    client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    ready(client, "own", tmp_path / "own.json", driftCheck={"intervalMinutes": 30})
    ready(client, "dflt", tmp_path / "dflt.json")  # the service's default: 10 minutes
    ready(client, "off", tmp_path / "off.json", driftCheck={"intervalMinutes": 0})

    # A fresh apply is checked at the next tick; then every interval from that check.
    assert checked(client, 1, clock) == ["dflt", "own"]
    assert drift(client, "own")["status"] == "IN_SYNC"
    assert drift(client, "off")["status"] == "UNKNOWN"
    assert checked(client, 2, clock) == []
    assert checked(client, 10.5, clock) == []
    assert checked(client, 11, clock) == ["dflt"]
    assert checked(client, 21, clock) == ["dflt"]
    assert checked(client, 30.5, clock) == []
    assert checked(client, 31, clock) == ["dflt", "own"]
    operation = client.get(f"/operations/{drift(client, 'own')['operationId']}", headers=auth())
    assert operation.json()["kind"] == "drift-check"
    assert operation.json()["requestedBy"] == "system"
    assert "scheduled drift check" in first_event(client, operation.json()["id"])["message"]


@pytest.mark.parametrize("service_default", [0, 10])
def test_a_tick_loads_only_environments_with_checks_on(
    tmp_path: Path, database_url: str, clock: FakeClock, service_default: int
) -> None:
    # A tick runs every few seconds: a fleet that never asked for checks must not be scanned.
    settings = drift_settings(tmp_path, database_url, drift_check_minutes=service_default)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)) as client:
        ready(client, "own", tmp_path / "own.json", driftCheck={"intervalMinutes": 30})
        ready(client, "dflt", tmp_path / "dflt.json")
        ready(client, "off", tmp_path / "off.json", driftCheck={"intervalMinutes": 0})
        database = client.app.state.services.database  # type: ignore[attr-defined]
        with database.session(readonly=True) as session:
            rows = session.scalars(check_candidates(settings, clock.at(1))).all()
            loaded = sorted(row.name for row in rows)
        assert loaded == (["dflt", "own"] if service_default else ["own"])
        assert checked(client, 1, clock) == loaded


def test_changing_the_interval_schedules_afresh(
    client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    ready(client, "dev", tmp_path / "drift.json", driftCheck={"intervalMinutes": 30})
    assert checked(client, 1, clock) == ["dev"]
    clock.at(5)
    patched = client.patch(
        "/environments/acme/dev", json={"driftCheck": {"intervalMinutes": 60}}, headers=auth()
    )
    assert patched.status_code == 200
    assert checked(client, 6, clock) == []  # the first check of the new interval: at 66
    assert checked(client, 31, clock) == []
    assert checked(client, 65, clock) == []
    assert checked(client, 66, clock) == ["dev"]


def test_a_busy_environment_is_checked_once_it_is_free(
    client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    body = environment_body(
        "acme",
        "dev",
        script={"drift-file": str(tmp_path / "d.json")},
        driftCheck={"intervalMinutes": 5},
    )
    assert (
        wait_for_operation(
            client, client.post("/environments", json=body, headers=auth()).json()["id"]
        )["state"]
        == "SUCCEEDED"
    )
    assert checked(client, 1, clock) == ["dev"]
    slow = client.patch(
        "/environments/acme/dev",
        json={"tags": {**body["tags"], "script-gate": str(gate)}},
        headers=auth(),
    )
    assert slow.status_code == 202
    assert scheduler(client).tick(clock.at(7)).drift_checks == []  # the update is running
    gate.write_text("go")
    assert wait_for_operation(client, slow.json()["id"])["state"] == "SUCCEEDED"
    assert checked(client, 8, clock) == ["dev"]


# --- remediation ------------------------------------------------------------------------


def test_found_drift_is_remediated_by_system_and_checked_again(
    client: TestClient, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    subscribe(client, receiver.url(), ["environment.drifted"])
    drift_file = tmp_path / "drift.json"
    ready(client, "dev", drift_file, driftCheck={"intervalMinutes": 60, "remediate": True})
    assert checked(client, 1, clock) == ["dev"]
    assert drift(client, "dev")["status"] == "IN_SYNC"

    drift_file.write_text(json.dumps([QUEUE_DRIFT]))  # changed behind the service's back
    assert checked(client, 61, clock) == ["dev"]
    found = drift(client, "dev")
    assert found["status"] == "DRIFTED"
    assert found["changes"] == [QUEUE_DRIFT]

    restoring = tick(client, clock, 62)
    [remediation] = restoring.remediations
    assert restoring.drift_checks == []  # the environment is busy restoring
    operation = client.get(f"/operations/{remediation}", headers=auth()).json()
    assert operation["kind"] == "update"
    assert operation["requestedBy"] == "system"
    event = first_event(client, remediation)
    assert event["data"]["reason"] == "drift"
    assert event["data"]["driftCheckId"] == found["operationId"]
    assert "restores the declared state" in event["message"]
    assert not drift_file.exists()  # the scripted update restored it
    assert drift(client, "dev")["status"] == "UNKNOWN"

    after = tick(client, clock, 63)  # the restored environment is checked at once
    assert after.remediations == []
    assert len(after.drift_checks) == 1
    assert drift(client, "dev")["status"] == "IN_SYNC"
    assert tick(client, clock, 64).queued is False
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session(readonly=True) as session:
        updates = session.scalars(select(OperationRow).where(OperationRow.kind == "update")).all()
        sent = session.scalars(
            select(DeliveryRow).where(DeliveryRow.type == "environment.drifted")
        ).all()
    assert [row.recover for row in updates] == [True]  # the engine re-reads the stack first
    assert len(sent) == 1


def test_without_remediate_drift_stays_reported(
    client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    drift_file = tmp_path / "drift.json"
    ready(client, "dev", drift_file, driftCheck={"intervalMinutes": 60})
    drift_file.write_text(json.dumps([QUEUE_DRIFT]))
    assert checked(client, 1, clock) == ["dev"]
    assert drift(client, "dev")["status"] == "DRIFTED"
    assert tick(client, clock, 2).remediations == []
    assert drift_file.exists()
    # Turning remediation on restores the drift already found.
    client.patch("/environments/acme/dev", json={"driftCheck": {"remediate": True}}, headers=auth())
    assert len(tick(client, clock, 3).remediations) == 1
    assert not drift_file.exists()


# --- replicas and restarts --------------------------------------------------------------


@pytest.mark.postgres
def test_two_replicas_queue_one_check_per_due_time(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL registry; the SQLite variant is the restart test")
    apps = [
        create_app(
            drift_settings(tmp_path / f"r{i}", database_url, schedule_interval_s=0.05),
            engine_reference=SCRIPTED_ENGINE,
            clock=clock,
        )
        for i in (1, 2)
    ]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        drift_file = tmp_path / "drift.json"
        ready(one, "dev", drift_file, driftCheck={"intervalMinutes": 10, "remediate": True})
        schedulers = [scheduler(c) for c in (one, two)]
        for minutes in (1, 5, 11, 12, 21, 25):
            if minutes == 21:
                drift_file.write_text(json.dumps([QUEUE_DRIFT]))
            clock.at(minutes)
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=_tick_together, args=(barrier, replica))
                for replica in schedulers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            # The loops tick too (every 50 ms, same clock): let what anyone queued finish.
            _wait_until_idle(one)
        database = one.app.state.services.database  # type: ignore[attr-defined]
        with database.session(readonly=True) as session:
            kinds = [
                row.kind
                for row in session.scalars(select(OperationRow).order_by(OperationRow.created_at))
            ]
    # create; checks due at +1, +11 and +21 (which finds drift); one remediation; its re-check.
    assert kinds == ["create", "drift-check", "drift-check", "drift-check", "update", "drift-check"]


def _tick_together(barrier: threading.Barrier, replica: Scheduler) -> None:
    barrier.wait()
    replica.tick()


def _wait_until_idle(client: TestClient, timeout: float = 30) -> None:
    database = client.app.state.services.database  # type: ignore[attr-defined]
    deadline = utcnow() + timedelta(seconds=timeout)
    stable = 0
    while stable < 5:  # idle across several loop ticks, not just between two of them
        with database.session(readonly=True) as session:
            active = session.scalars(
                select(OperationRow).where(OperationRow.state.in_(("QUEUED", "RUNNING")))
            ).all()
        stable = 0 if active else stable + 1
        assert utcnow() < deadline, f"operations still active: {[a.kind for a in active]}"
        threading.Event().wait(0.1)


def test_a_restart_keeps_the_due_times_and_the_remediation_claim(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    settings = drift_settings(tmp_path, database_url)
    drift_file = tmp_path / "drift.json"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)) as client:
        ready(client, "dev", drift_file, driftCheck={"intervalMinutes": 10, "remediate": True})
        assert checked(client, 1, clock) == ["dev"]
        drift_file.write_text(json.dumps([QUEUE_DRIFT]))
        assert checked(client, 11, clock) == ["dev"]
        assert drift(client, "dev")["status"] == "DRIFTED"
        queued = scheduler(client).tick(clock.at(12))
        assert len(queued.remediations) == 1
        remediation = queued.remediations[0]
    # The service stopped with the remediation queued (or running: then it is retried).
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)) as client:
        wait_for_operation(client, remediation)
        again = tick(client, clock, 12.5)
        assert again.remediations == []  # claimed before the restart: not queued twice
        database = client.app.state.services.database  # type: ignore[attr-defined]
        with database.session(readonly=True) as session:
            checks = session.scalars(
                select(OperationRow).where(OperationRow.kind == "drift-check")
            ).all()
        # +1, +11, and (if the remediation succeeded) its re-check; none repeated.
        assert len(checks) == 2 + len(again.drift_checks)
        assert checked(client, 13, clock) == []
