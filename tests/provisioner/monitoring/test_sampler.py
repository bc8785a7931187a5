"""The health sampler against a real (moto) environment and the registry, on SQLite and
PostgreSQL: one `files.failed` per failed file across replicas sampling at once and across
restarts, late status writes within the look-back, the per-sample cap, alarms and UNKNOWN."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import select

from handlers.core.status_store import iso_now
from provisioner.config import Settings
from provisioner.db import Database
from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.alarm_evaluation import evaluate_alarms
from provisioner.emulator.apply import AwsClients, apply_pipeline
from provisioner.emulator.server import EMULATOR_CONFIG
from provisioner.engines.aws import DataPlaneAccess
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.monitoring import probe
from provisioner.monitoring.repository import HealthRepository
from provisioner.monitoring.service import HealthSampler, SampleResult
from provisioner.webhooks.models import DeliveryRow, WebhookRow
from stacks.config import PipelineConfig
from tests.emulator.conftest import fake_aws_environment
from tests.provisioner.conftest import make_settings

REGION = "us-east-1"
CONFIG = PipelineConfig(tenant="acme", environment="dev")


class MotoHost:
    """The host half the sampler uses, on in-process moto (the local engine's evaluation)."""

    def __init__(self) -> None:
        self.clients = AwsClients.from_session(region=REGION)
        self.access = DataPlaneAccess(boto3.Session(region_name=REGION))
        self.broken = False

    def evaluate_alarms(self, config: PipelineConfig) -> None:
        evaluate_alarms(self.clients, config, MOTO_ACCOUNT_ID, datetime.now(UTC))

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        if self.broken:
            return DataPlaneAccess(
                boto3.Session(region_name=region), endpoint_url="http://127.0.0.1:9"
            )
        return self.access


@dataclass
class World:
    settings: Settings
    url: str
    host: MotoHost
    outputs: dict[str, str]
    environment_id: str

    def sampler(self, **overrides: Any) -> tuple[HealthSampler, Database]:
        database = Database(self.url)
        settings = self.settings.model_copy(update=overrides)
        return HealthSampler(settings, database, self.host, "local"), database  # type: ignore[arg-type]

    def fail(self, file_id: str, updated_at: datetime, attempt: int = 1) -> None:
        self.host.clients.dynamodb.put_item(
            TableName=self.outputs["statusTableName"],
            Item={
                "fileId": {"S": file_id},
                "objectKey": {"S": f"incoming/{file_id}.csv"},
                "receivedAt": {"S": iso_now(updated_at - timedelta(seconds=1))},
                "status": {"S": "FAILED"},
                "stage": {"S": "validator"},
                "attempt": {"N": str(attempt)},
                "updatedAt": {"S": iso_now(updated_at)},
                "error": {"M": {"stage": {"S": "validator"}, "type": {"S": "InvalidFileError"}}},
            },
        )

    def files_failed(self) -> list[dict[str, Any]]:
        database = Database(self.url)
        try:
            with database.session(readonly=True) as session:
                rows = session.scalars(
                    select(DeliveryRow).where(DeliveryRow.type == "files.failed")
                ).all()
                return [json.loads(row.body)["data"] for row in rows]
        finally:
            database.dispose()


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    fake_aws_environment(monkeypatch)
    with mock_aws(config=EMULATOR_CONFIG):  # type: ignore[arg-type]
        host = MotoHost()
        outputs = apply_pipeline(CONFIG, host.clients, api_endpoint="http://127.0.0.1:1/prod")
        settings = make_settings(tmp_path / "data", database_url, engine="local")
        database = Database(database_url)
        database.create_schema()
        environment_id = str(uuid.uuid4())
        created = datetime.now(UTC) - timedelta(minutes=10)
        with database.session() as session:
            session.add(
                EnvironmentRow(
                    id=environment_id,
                    tenant="acme",
                    name="dev",
                    state=EnvironmentState.READY,
                    engine="local",
                    region=REGION,
                    config={},
                    tags={},
                    outputs=outputs,
                    created_at=created,
                    updated_at=created,
                )
            )
            session.add(
                WebhookRow(
                    id=str(uuid.uuid4()),
                    url="https://hooks.example/x",
                    events=["files.failed", "environment.alarm"],
                    secret="s" * 32,
                    tenant="acme",
                    created_by="test",
                )
            )
        database.dispose()
        yield World(settings, database_url, host, outputs, environment_id)


def test_two_replicas_sampling_at_once_send_one_event_per_failed_file(world: World) -> None:
    now = datetime.now(UTC)
    for index in range(5):
        world.fail(f"f{index}", now - timedelta(seconds=30 - index))
    replicas = [world.sampler() for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(sampler: HealthSampler) -> None:
        try:
            for _ in range(3):
                barrier.wait(timeout=30)
                sampler.sample()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s, _ in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    events = world.files_failed()
    assert sorted(e["fileId"] for e in events) == [f"f{i}" for i in range(5)]
    assert all(e["tenant"] == "acme" and e["name"] == "dev" for e in events)
    assert events[0]["error"] == {"stage": "validator", "type": "InvalidFileError"}
    for _, database in replicas:
        database.dispose()


def test_a_restart_resumes_from_the_watermark_without_duplicates_or_losses(world: World) -> None:
    now = datetime.now(UTC)
    world.fail("before", now - timedelta(seconds=20))
    first, database = world.sampler()
    assert first.sample().files_failed == 1
    database.dispose()  # the replica stops
    world.fail("while-down", now - timedelta(seconds=5))
    # A status write that lands late, stamped before the watermark but within the look-back.
    world.fail("late", now - timedelta(seconds=25))
    # A retried file that fails again is a new failure.
    world.fail("before", now - timedelta(seconds=2), attempt=2)
    restarted, database = world.sampler()
    assert restarted.sample().files_failed == 3
    assert restarted.sample().files_failed == 0
    database.dispose()
    seen = sorted((e["fileId"], e["attempt"]) for e in world.files_failed())
    assert seen == [("before", 1), ("before", 2), ("late", 1), ("while-down", 1)]


def test_failures_before_the_environment_existed_are_not_notified(world: World) -> None:
    world.fail("ancient", datetime.now(UTC) - timedelta(hours=3))
    sampler, database = world.sampler()
    assert sampler.sample().files_failed == 0
    database.dispose()


def test_the_cap_per_sample_defers_the_rest(world: World) -> None:
    now = datetime.now(UTC)
    for index in range(5):
        world.fail(f"c{index}", now - timedelta(seconds=10 - index))
    sampler, database = world.sampler(health_max_failed_events=2)
    assert [sampler.sample().files_failed for _ in range(4)] == [2, 2, 1, 0]
    database.dispose()
    assert [e["fileId"] for e in world.files_failed()] == [f"c{i}" for i in range(5)]


def test_health_records_alarm_states_and_depths_and_raises_alarms_once(world: World) -> None:
    sampler, database = world.sampler()
    sampler.sample()
    with database.session(readonly=True) as session:
        row = HealthRepository(session).get(world.environment_id)
        assert row is not None
        assert row.health["status"] == "OK"
        assert row.health["dlqDepths"] == {
            "ingest": 0,
            "validator": 0,
            "processor": 0,
            "aggregator": 0,
        }
    sqs = world.host.clients.sqs
    sqs.send_message(
        QueueUrl=world.outputs["processorDlqUrl"], MessageBody="{}", MessageGroupId="g"
    )
    assert sampler.sample().alarms_raised == 1
    assert sampler.sample().alarms_raised == 0  # still in ALARM: not raised again
    with database.session(readonly=True) as session:
        row = HealthRepository(session).get(world.environment_id)
        assert row is not None
        health = row.health
    assert health["status"] == "ALARM"
    assert health["dlqDepths"]["processor"] == 1
    states = {alarm["name"]: alarm["state"] for alarm in health["alarms"]}
    assert states["p-acme-dev-processor-dlq-depth"] == "ALARM"
    assert states["p-acme-dev-failed-executions"] == "OK"
    sqs.purge_queue(QueueUrl=world.outputs["processorDlqUrl"])
    sampler.sample()
    with database.session(readonly=True) as session:
        row = HealthRepository(session).get(world.environment_id)
        assert row is not None
        assert row.health["status"] == "OK"
    database.dispose()


def test_an_unreadable_data_plane_keeps_the_previous_sample(world: World) -> None:
    sampler, database = world.sampler()
    sampler.sample()
    with database.session(readonly=True) as session:
        first = HealthRepository(session).get(world.environment_id)
        assert first is not None
        checked = first.checked_at
    world.host.broken = True
    result = sampler.sample()
    assert result.failed == [world.environment_id]
    with database.session(readonly=True) as session:
        row = HealthRepository(session).get(world.environment_id)
        assert row is not None
        assert row.checked_at == checked
    database.dispose()


def test_a_sample_taken_over_a_stale_version_is_not_recorded_and_notifies_nothing(
    world: World,
) -> None:
    """The compare-and-set itself: replica A read the registry, B recorded meanwhile."""
    world.fail("raced", datetime.now(UTC) - timedelta(seconds=5))
    a, database_a = world.sampler()
    b, database_b = world.sampler()
    for _ in range(2):  # over no row yet (an insert race), then over an older version
        stale = a._targets()
        b.sample()
        result = SampleResult()
        for target in stale:
            reading = probe.read(
                world.host.access,
                CONFIG,
                world.outputs,
                datetime.now(UTC),
                "2000-01-01T00:00:00.000Z",
            )
            a._record(target, reading, datetime.now(UTC), result)
        assert result.skipped == [world.environment_id]
        assert result.files_failed == 0
    assert [e["fileId"] for e in world.files_failed()] == ["raced"]
    database_a.dispose()
    database_b.dispose()
