"""The fleet's counts (`GET /fleet`) and its samples over time (`GET /fleet/history`): counts
by state, template version and code version, tenant isolation, bad input, and sampling that is
once per period with two replicas on one registry, survives a restart and prunes old samples."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.environments.models import DriftStatus, EnvironmentRow
from provisioner.fleet.models import FleetSampleRow
from provisioner.fleet.service import NOT_FAILING, UNKNOWN, _status, period_start
from provisioner.schedules.scheduler import Scheduler
from tests.factories import auth, create_api_key, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings
from tests.provisioner.schedules.test_expiry import FakeClock
from tests.provisioner.templates.test_templates import add_version, publish


def _create(client: TestClient, tenant: str, name: str, **extra: Any) -> str:
    response = client.post(
        "/environments", json=environment_body(tenant, name, **extra), headers=auth()
    )
    assert response.status_code == 202, response.text
    state: str = wait_for_operation(client, response.json()["id"])["state"]
    return state


def _fleet(client: TestClient, query: str = "", key: str | None = None) -> dict[str, Any]:
    response = client.get(f"/fleet{query}", headers=auth(key) if key else auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_counts_by_state_template_version_and_code_version(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 1024})
    assert _create(client, "acme", "one", template="gold") == "SUCCEEDED"
    assert _create(client, "acme", "two", template="gold") == "SUCCEEDED"
    add_version(client, "gold", {"memory_mb": 2048})
    assert _create(client, "acme", "three", template="gold") == "SUCCEEDED"
    assert _create(client, "globex", "plain") == "SUCCEEDED"
    broken = environment_body("globex", "broken", script={"fail-at": "1"})
    created = client.post("/environments", json=broken, headers=auth())
    assert wait_for_operation(client, created.json()["id"])["state"] == "FAILED"
    assert _create(client, "globex", "gone") == "SUCCEEDED"
    gone = client.delete("/environments/globex/gone", headers=auth())
    wait_for_operation(client, gone.json()["id"])

    fleet = _fleet(client)
    assert fleet["tenant"] is None
    assert fleet["byState"] == {"READY": 4, "FAILED": 1, "DESTROYED": 1}
    assert fleet["total"] == 5  # not the destroyed one
    # one/two are on gold@1 with gold@2 published; the failed create never applied code.
    assert fleet["outdated"] == 3
    assert fleet["failing"] == 1
    # No drift check or health yet: UNKNOWN, neither drifted nor failing.
    assert fleet["drifted"] == 0
    assert fleet["drift"] == {"UNKNOWN": 5}
    assert fleet["health"] == {"UNKNOWN": 5}
    assert fleet["byTemplate"] == [
        {"template": "default", "version": 1, "latestVersion": 1, "environments": 2, "outdated": 1},
        {"template": "gold", "version": 1, "latestVersion": 2, "environments": 2, "outdated": 2},
        {"template": "gold", "version": 2, "latestVersion": 2, "environments": 1, "outdated": 0},
    ]
    code = fleet["codeVersion"]
    assert fleet["byCodeVersion"] == [
        {"codeVersion": code, "environments": 4, "current": True},
        {"codeVersion": None, "environments": 1, "current": False},
    ]

    acme = _fleet(client, "?tenant=acme")
    assert (acme["tenant"], acme["total"], acme["outdated"], acme["failing"]) == ("acme", 3, 2, 0)


def test_tenant_keys_see_only_their_own_fleet(client: TestClient) -> None:
    _create(client, "acme", "dev")
    _create(client, "globex", "dev")
    _create(client, "globex", "prod")
    key = create_api_key(client, "tenant:globex")
    own = _fleet(client, key=key)
    assert (own["tenant"], own["total"]) == ("globex", 2)
    assert _fleet(client, "?tenant=globex", key=key)["total"] == 2
    other = client.get("/fleet?tenant=acme", headers=auth(key))
    assert other.status_code == 404
    assert other.json()["error"] == "not_found"
    history = client.get("/fleet/history?tenant=acme", headers=auth(key))
    assert history.status_code == 404
    assert client.get("/fleet/history", headers=auth(key)).json()["tenant"] == "globex"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/fleet?tenant=Not_A_Tenant", "tenant"),
        ("/fleet/history?minutes=0", "minutes"),
        ("/fleet/history?minutes=99999999", "minutes"),
        ("/fleet/history?minutes=soon", "minutes"),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, path: str, field: str) -> None:
    response = client.get(path, headers=auth())
    assert response.status_code == 422, response.text
    assert field in response.text


@pytest.mark.parametrize("path", ["/fleet", "/fleet/history"])
def test_needs_an_api_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers=auth("mdp_wrong")).status_code == 401


def test_a_drifted_environment_counts_as_drifted(client: TestClient) -> None:
    _create(client, "acme", "one")
    _create(client, "acme", "two")
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session() as session:
        row = session.scalars(select(EnvironmentRow).where(EnvironmentRow.name == "one")).one()
        row.drift_status = DriftStatus.DRIFTED
        other = session.scalars(select(EnvironmentRow).where(EnvironmentRow.name == "two")).one()
        other.drift_status = DriftStatus.IN_SYNC
    fleet = _fleet(client)
    assert fleet["drifted"] == 1
    assert fleet["drift"] == {"DRIFTED": 1, "IN_SYNC": 1}
    assert fleet["failing"] == 0


def test_drift_and_health_are_read_from_the_environment_json() -> None:
    assert _status({}, "drift") == UNKNOWN
    assert _status({"drift": None}, "drift") == UNKNOWN
    assert _status({"drift": {"status": "DRIFTED"}}, "drift") == "DRIFTED"
    assert _status({"health": {"status": "ALARM"}}, "health") == "ALARM"
    assert "ALARM" not in NOT_FAILING
    assert {"OK", UNKNOWN} <= NOT_FAILING


# --- samples over time ---


def _samples(client: TestClient) -> list[tuple[Any, str, int]]:
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session(readonly=True) as session:
        rows = session.scalars(
            select(FleetSampleRow).order_by(FleetSampleRow.period_start, FleetSampleRow.tenant)
        ).all()
        return [(r.period_start, r.tenant, r.environments) for r in rows]


def test_one_sample_per_period_and_history_shows_them(settings: Settings) -> None:
    clock = FakeClock()
    app = create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)
    with TestClient(app) as client:
        scheduler: Scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
        _create(client, "acme", "dev")
        start = period_start(clock.now, settings.fleet_sample_interval_s)
        clock.now = start + timedelta(minutes=1, seconds=1)
        scheduler.tick()
        assert scheduler.tick().fleet_samples == 0  # the same period again
        _create(client, "acme", "two")
        clock.now = start + timedelta(minutes=2, seconds=1)
        assert scheduler.tick().fleet_samples == 2  # the whole fleet and acme
        history = client.get("/fleet/history?minutes=60", headers=auth()).json()
        counts = {s["at"]: s["environments"] for s in history["samples"]}
        assert counts[_iso(start + timedelta(minutes=1))] == 1
        assert counts[_iso(start + timedelta(minutes=2))] == 2
        assert history["intervalSeconds"] == 60
        periods = [at for at, tenant, _ in _samples(client) if tenant == ""]
        assert len(periods) == len(set(periods))


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def test_samples_survive_a_restart_and_old_ones_are_pruned(settings: Settings) -> None:
    clock = FakeClock()
    start = period_start(clock.now, settings.fleet_sample_interval_s)
    clock.now = start + timedelta(seconds=5)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)) as client:
        _create(client, "acme", "dev")
        client.app.state.services.scheduler.tick()  # type: ignore[attr-defined]
        before = _samples(client)
    # This period's one sample: the scheduler's loop may take it before or after the create.
    assert [at for at, tenant, _ in before if tenant == ""] == [start]
    clock.now = start + timedelta(seconds=30)  # the same period, after a restart
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)) as client:
        scheduler = client.app.state.services.scheduler  # type: ignore[attr-defined]
        assert scheduler.tick().fleet_samples == 0
        assert _samples(client) == before
        clock.now = start + timedelta(hours=settings.fleet_sample_retention_hours, minutes=2)
        scheduler.tick()
        after = _samples(client)
    assert all(at > start for at, _, _ in after)
    assert {tenant for _, tenant, _ in after} == {"", "acme"}


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


def _tick_together(barrier: threading.Barrier, scheduler: Scheduler, results: list[int]) -> None:
    barrier.wait()
    results.append(scheduler.tick().fleet_samples)


@pytest.mark.postgres
def test_two_replicas_sample_each_period_once(
    two_apps: tuple[TestClient, TestClient, FakeClock],
) -> None:
    one, two, clock = two_apps
    _create(one, "acme", "dev")
    schedulers = [c.app.state.services.scheduler for c in (one, two)]  # type: ignore[attr-defined]
    start = clock.now
    written = []
    for minutes in (1, 2, 3):
        clock.now = start + timedelta(minutes=minutes)
        barrier = threading.Barrier(2)
        results: list[int] = []

        threads = [
            threading.Thread(target=_tick_together, args=(barrier, s, results)) for s in schedulers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        written.append(sorted(results))
    database = one.app.state.services.database  # type: ignore[attr-defined]
    with database.session(readonly=True) as session:
        per_period = session.execute(
            select(FleetSampleRow.period_start, FleetSampleRow.tenant, func.count()).group_by(
                FleetSampleRow.period_start, FleetSampleRow.tenant
            )
        ).all()
    # The loops ticked too (every 50 ms, same clock); still one row per period and tenant.
    assert all(count == 1 for _, _, count in per_period)
    assert len({period for period, _, _ in per_period}) >= 3
    # Whichever replica won a period, the other wrote nothing for it.
    assert all(result[0] == 0 for result in written)
