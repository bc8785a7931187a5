"""Drift end to end on the local engine: resources changed behind the service's back (with boto3,
straight in the emulator) are found by a drift check and listed resource by resource; with
`remediate`, a scheduled check finds them and the service restores both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from provisioner.db import utcnow
from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.schedules.scheduler import Scheduler
from stacks import spec
from stacks.config import PipelineConfig
from tests.e2e.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    # The scheduler's loop ticks once at the start, then only when a test ticks it (with a
    # "now" of its own: the intervals are minutes).
    data_dir: Path = tmp_path_factory.mktemp("e2e-drift") / "data"
    with running_service(data_dir, schedule_interval_s=3600) as running:
        yield running


def client(environment: dict[str, Any], service_name: str) -> Any:
    return boto3.client(
        service_name,
        endpoint_url=environment["awsEndpointUrl"],
        region_name=environment["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def model_names(environment: dict[str, Any]) -> spec.PipelineNames:
    config = PipelineConfig(
        tenant=environment["tenant"], environment=environment["name"], region=environment["region"]
    )
    return spec.names(config, MOTO_ACCOUNT_ID)


def drift_behind_the_service(environment: dict[str, Any]) -> dict[str, str]:
    """Change the ingest queue's visibility timeout and delete the ingest function's log group
    retention, directly in the emulator; returns the two resources' names."""
    names = model_names(environment)
    sqs, logs = client(environment, "sqs"), client(environment, "logs")
    url = sqs.get_queue_url(QueueName=names.ingest_queue)["QueueUrl"]
    policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
    # With the policy: moto resets an omitted Policy, which would be drift of its own.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "7", "Policy": policy["Policy"]}
    )
    group = names.function_log_groups["ingest"]
    logs.delete_retention_policy(logGroupName=group)
    return {"queue": names.ingest_queue, "log group": group}


def declared_state_holds(environment: dict[str, Any]) -> tuple[str, int | None]:
    """The ingest queue's visibility timeout and its function log group's retention, read back."""
    names = model_names(environment)
    sqs, logs = client(environment, "sqs"), client(environment, "logs")
    url = sqs.get_queue_url(QueueName=names.ingest_queue)["QueueUrl"]
    visibility = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    group = names.function_log_groups["ingest"]
    [found] = [
        g
        for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        if g["logGroupName"] == group
    ]
    return visibility["Attributes"]["VisibilityTimeout"], found.get("retentionInDays")


def refresh(service: RunningService, tenant: str, name: str) -> dict[str, Any]:
    response = service.client.post(f"/environments/{tenant}/{name}/refresh")
    assert response.status_code == 202, response.text
    finished = service.wait(response.json()["id"], timeout=120)
    assert finished["state"] == "SUCCEEDED", finished
    environment: dict[str, Any] = service.client.get(f"/environments/{tenant}/{name}").json()
    return environment


def listed(service: RunningService, query: str) -> list[str]:
    body = service.client.get(f"/environments?{query}").json()
    return [f"{item['tenant']}/{item['name']}" for item in body["items"]]


def test_a_refresh_lists_exactly_the_drift_made_in_the_emulator(service: RunningService) -> None:
    environment = service.create("acme", "drift")
    assert environment["drift"]["status"] == "UNKNOWN"
    in_sync = refresh(service, "acme", "drift")
    assert in_sync["drift"]["status"] == "IN_SYNC"
    assert in_sync["drift"]["changes"] == []
    assert "acme/drift" not in listed(service, "drifted=true")

    changed = drift_behind_the_service(environment)
    drifted = refresh(service, "acme", "drift")

    drift = drifted["drift"]
    assert drift["status"] == "DRIFTED"
    assert drift["operationId"] == drifted["lastOperation"]["id"]
    assert drift["checkedAt"] is not None
    assert sorted(drift["changes"], key=lambda c: c["resource"]) == sorted(
        [
            {
                "resource": changed["queue"],
                "type": "aws:sqs/queue:Queue",
                "kind": "update",
                "attributes": ["VisibilityTimeout"],
            },
            {
                "resource": changed["log group"],
                "type": "aws:cloudwatch/logGroup:LogGroup",
                "kind": "update",
                "attributes": ["retentionInDays"],
            },
        ],
        key=lambda c: c["resource"],
    )
    # A drift check changes nothing.
    assert declared_state_holds(environment) == ("7", None)
    assert listed(service, "drifted=true") == ["acme/drift"]
    assert "acme/drift" not in listed(service, "drifted=false")


def scheduler(service: RunningService) -> Scheduler:
    found: Scheduler = service.app.state.services.scheduler
    return found


def test_a_scheduled_check_finds_the_drift_and_remediation_restores_it(
    service: RunningService,
) -> None:
    environment = service.create("acme", "heal")
    config = PipelineConfig(tenant="acme", environment="heal", region=environment["region"])
    declared = (
        str(spec.queue_settings()["ingest"].visibility_timeout_s),
        config.log_retention_days,
    )
    assert declared_state_holds(environment) == declared
    changed = drift_behind_the_service(environment)
    patched = service.client.patch(
        "/environments/acme/heal", json={"driftCheck": {"intervalMinutes": 5, "remediate": True}}
    )
    assert patched.status_code == 200, patched.text  # metadata: no operation

    # The first tick schedules the first check an interval away; it runs when due.
    start = utcnow()
    assert scheduler(service).tick(start).drift_checks == []
    assert scheduler(service).tick(start + timedelta(minutes=4)).drift_checks == []
    [check] = scheduler(service).tick(start + timedelta(minutes=5)).drift_checks
    finished = service.wait(check, timeout=120)
    assert finished["kind"] == "drift-check"
    assert finished["requestedBy"] == "system"
    assert finished["state"] == "SUCCEEDED", finished
    drift = service.client.get("/environments/acme/heal").json()["drift"]
    assert drift["status"] == "DRIFTED"
    assert drift["operationId"] == check
    assert sorted((c["resource"], c["attributes"]) for c in drift["changes"]) == sorted(
        [(changed["queue"], ["VisibilityTimeout"]), (changed["log group"], ["retentionInDays"])]
    )
    assert declared_state_holds(environment) == ("7", None)  # the check changed nothing

    [remediation] = scheduler(service).tick(start + timedelta(minutes=6)).remediations
    restored = service.wait(remediation, timeout=180)
    assert restored["kind"] == "update"
    assert restored["requestedBy"] == "system"
    assert restored["state"] == "SUCCEEDED", restored
    assert declared_state_holds(environment) == declared

    [recheck] = scheduler(service).tick(start + timedelta(minutes=7)).drift_checks
    assert service.wait(recheck, timeout=120)["state"] == "SUCCEEDED"
    healed = service.client.get("/environments/acme/heal").json()
    assert healed["drift"]["status"] == "IN_SYNC"
    assert healed["drift"]["changes"] == []
    assert healed["state"] == "READY"
    assert "acme/heal" not in listed(service, "drifted=true")
