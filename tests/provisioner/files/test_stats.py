"""File throughput and latency (`GET /environments/{t}/{n}/files/stats`): the computation over
status items, and the route (auth, tenant isolation, bad input) against a real status table
in moto, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from sqlalchemy import select

from handlers.core.ids import file_id
from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.emulator.apply import table_create_args
from provisioner.environments.models import EnvironmentRow
from provisioner.files.stats import file_stats, percentile
from stacks.spec import STATUS_TABLE
from tests.emulator.conftest import REGION, fake_aws_environment
from tests.factories import auth, create_api_key, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE
from tests.provisioner.schedules.test_expiry import FakeClock

NOW = datetime(2026, 12, 1, 12, 30, 20, tzinfo=UTC)
TABLE = "p-acme-stats-status"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _item(n: int, status: str, received: datetime, latency_s: float = 0) -> dict[str, Any]:
    return {
        "fileId": file_id("b", f"incoming/{n}.csv", str(n)),
        "objectKey": f"incoming/{n}.csv",
        "status": status,
        "receivedAt": _iso(received),
        "updatedAt": _iso(received + timedelta(seconds=latency_s)),
    }


def test_nearest_rank_percentiles() -> None:
    ordered = [float(s) for s in range(1, 101)]
    assert [percentile(ordered, p) for p in (50, 90, 99)] == [50.0, 90.0, 99.0]
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0


def test_counts_per_minute_by_final_status_and_latency() -> None:
    minute = NOW.replace(second=0)
    finished = minute + timedelta(seconds=10)
    items = [
        # 100 completed in the current minute, 1..100 s after their upload.
        *(_item(n, "COMPLETED", finished - timedelta(seconds=n), n) for n in range(1, 101)),
        _item(200, "FAILED", minute - timedelta(minutes=5), 2),
        _item(201, "PROCESSING", minute - timedelta(minutes=5)),
        # Finished before the window: neither counted nor measured.
        _item(202, "COMPLETED", NOW - timedelta(minutes=90), 1),
        {"fileId": "x", "status": "COMPLETED", "receivedAt": "garbage", "updatedAt": None},
    ]
    stats = file_stats(items, NOW, 60)
    assert stats.bucket_minutes == 1
    assert len(stats.buckets) == 60
    assert stats.end == minute + timedelta(minutes=1)
    assert stats.start == stats.end - timedelta(minutes=60)
    assert stats.totals == {"COMPLETED": 100, "FAILED": 1}
    assert stats.received == 102  # the processing one was received, not finished
    assert (stats.latency.count, stats.latency.p50, stats.latency.p90, stats.latency.p99) == (
        100,
        50.0,
        90.0,
        99.0,
    )
    assert stats.latency.max == 100.0
    last = stats.buckets[-1]
    assert last.start == minute
    assert last.counts == {"COMPLETED": 100}
    assert last.latency.p90 == 90.0
    failed = stats.buckets[-6]
    assert failed.counts == {"FAILED": 1}
    assert failed.latency.count == 0
    assert failed.latency.p50 is None
    assert all(not b.counts for b in stats.buckets[:-6])


def test_wide_windows_use_wider_buckets() -> None:
    stats = file_stats([_item(1, "COMPLETED", NOW - timedelta(hours=9), 4)], NOW, 600)
    assert stats.bucket_minutes == 5
    assert len(stats.buckets) == 120
    assert stats.totals == {"COMPLETED": 1}
    assert file_stats([], NOW, 60).latency.count == 0


# --- the route ---


@pytest.fixture
def stats_client(settings: Settings) -> Iterator[tuple[TestClient, FakeClock]]:
    clock = FakeClock()
    clock.now = NOW
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_environment(monkeypatch)
        with mock_aws():
            boto3.client("dynamodb", region_name=REGION).create_table(
                TableName=TABLE, **table_create_args(STATUS_TABLE)
            )
            app = create_app(settings, engine_reference=SCRIPTED_ENGINE, clock=clock)
            with TestClient(app) as client:
                yield client, clock


def _environment_with_status_table(client: TestClient) -> None:
    created = client.post(
        "/environments", json=environment_body("acme", "stats", region=REGION), headers=auth()
    )
    assert wait_for_operation(client, created.json()["id"])["state"] == "SUCCEEDED"
    database = client.app.state.services.database  # type: ignore[attr-defined]
    with database.session() as session:
        row = session.scalars(select(EnvironmentRow).where(EnvironmentRow.name == "stats")).one()
        row.outputs = {**(row.outputs or {}), "statusTableName": TABLE}


def _put(item: dict[str, Any]) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    table.put_item(Item={**item, "bucket": "b", "versionId": "v"})


def test_route_reads_the_status_table(stats_client: tuple[TestClient, FakeClock]) -> None:
    client, _clock = stats_client
    _environment_with_status_table(client)
    _put(_item(1, "COMPLETED", NOW - timedelta(minutes=3), 4))
    _put(_item(2, "COMPLETED", NOW - timedelta(minutes=3), 8))
    _put(_item(3, "FAILED", NOW - timedelta(minutes=1), 1))
    canary = _item(4, "COMPLETED", NOW - timedelta(minutes=1), 30)
    _put({**canary, "objectKey": "incoming/.canary/x.csv", "canary": True})
    response = client.get("/environments/acme/stats/files/stats", headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["minutes"] == 60
    assert body["bucketMinutes"] == 1
    assert body["totals"] == {"COMPLETED": 2, "FAILED": 1}  # not the canary
    assert body["latency"] == {"count": 2, "p50": 4.0, "p90": 8.0, "p99": 8.0, "max": 8.0}
    assert len(body["buckets"]) == 60
    assert body["truncated"] is False
    short = client.get("/environments/acme/stats/files/stats?minutes=2", headers=auth()).json()
    assert short["totals"] == {"FAILED": 1}

    # A tenant key sees its own tenant's; another tenant's is a missing environment.
    own = create_api_key(client, "tenant:acme")
    assert client.get("/environments/acme/stats/files/stats", headers=auth(own)).status_code == 200
    other = create_api_key(client, "tenant:globex")
    denied = client.get("/environments/acme/stats/files/stats", headers=auth(other))
    assert denied.status_code == 404
    assert denied.json()["error"] == "not_found"


@pytest.mark.parametrize("minutes", ["0", "1441", "soon", "-5"])
def test_bad_window_is_422_naming_it(
    stats_client: tuple[TestClient, FakeClock], minutes: str
) -> None:
    client, _ = stats_client
    _environment_with_status_table(client)
    response = client.get(f"/environments/acme/stats/files/stats?minutes={minutes}", headers=auth())
    assert response.status_code == 422, response.text
    assert "minutes" in response.text


def test_needs_a_key_and_an_environment(stats_client: tuple[TestClient, FakeClock]) -> None:
    client, _ = stats_client
    assert client.get("/environments/acme/stats/files/stats").status_code == 401
    missing = client.get("/environments/acme/nowhere/files/stats", headers=auth())
    assert missing.status_code == 404
