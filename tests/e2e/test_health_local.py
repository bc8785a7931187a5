"""Alarms and health end to end on the local engine (docs/architecture.md §8): a failing file
raises its DLQ's depth and the last hour's failures, its DLQ alarm goes to ALARM in the
emulator, the environment's health says ALARM, and `files.failed` and `environment.alarm`
reach a real HTTP receiver on loopback; an environment without failures stays OK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.webhooks.signing import verify
from tests.e2e.service import RunningService, running_service
from tests.e2e.trades import trades_csv
from tests.provisioner.webhooks.receiver import Receiver, running_receiver

FAST: dict[str, object] = {
    "health_interval_s": 0.5,
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_retry_initial_s": 0.1,
    "webhook_retry_max_s": 0.4,
    "webhook_poll_interval_s": 0.05,
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    data: Path = tmp_path_factory.mktemp("health") / "data"
    with running_service(data, **FAST) as running:
        yield running


def _health_until(
    service: RunningService,
    name: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 90,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = service.client.get(f"/environments/acme/{name}").json()["health"]
        if condition(health):
            return health
        assert time.monotonic() < deadline, f"health of acme/{name} never got there: {health}"
        time.sleep(0.2)


def _events(
    receiver: Receiver, kind: str, count: int = 1, timeout: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r.json for r in receiver.snapshot() if r.json["type"] == kind]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no {kind} delivery: {receiver.snapshot()}"
        time.sleep(0.1)


def test_a_failing_file_alarms_and_is_delivered(
    service: RunningService, receiver: Receiver
) -> None:
    hook = service.client.post(
        "/admin/webhooks",
        json={"url": receiver.url(), "events": ["files.failed", "environment.alarm"]},
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    sick, clean = service.create_many("acme", ["sick", "clean"])
    # Sampled before anything failed: every alarm OK, empty DLQs.
    before = _health_until(service, "sick", lambda h: h["status"] == "OK")
    assert before["dlqDepths"] == {"ingest": 0, "validator": 0, "processor": 0, "aggregator": 0}
    assert before["failedLastHour"] == 0
    assert before["checkedAt"] is not None
    good = service.upload(clean, "incoming/good.csv", trades_csv())
    assert service.wait_for_file("acme", "clean", good)["status"] == "COMPLETED"

    bad = service.upload(sick, "incoming/bad.csv", b"time,sym,px,qty\n1,2,3,4\n")
    assert service.wait_for_file("acme", "sick", bad)["status"] == "FAILED"
    health = _health_until(
        service, "sick", lambda h: h["status"] == "ALARM" and h["dlqDepths"]["validator"] == 1
    )
    assert health["failedLastHour"] == 1
    states = {alarm["name"]: alarm["state"] for alarm in health["alarms"]}
    assert states["p-acme-sick-validator-dlq-depth"] == "ALARM"
    assert states["p-acme-sick-ingest-dlq-depth"] == "OK"
    assert len(states) == 5
    # The alarm really changed state in the emulator (evaluated there, not in the response).
    (alarm,) = service.aws(sick, "cloudwatch").describe_alarms(
        AlarmNames=["p-acme-sick-validator-dlq-depth"]
    )["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM"

    (failed,) = _events(receiver, "files.failed")
    assert failed["data"]["fileId"] == bad
    assert failed["data"]["tenant"] == "acme"
    assert failed["data"]["name"] == "sick"
    assert failed["data"]["objectKey"] == "incoming/bad.csv"
    assert failed["data"]["error"]["type"] == "InvalidFileError"
    delivered = next(r for r in receiver.snapshot() if r.json["id"] == failed["id"])
    assert verify(secret, delivered.body, delivered.headers["x-provisioner-signature"])
    raised = {e["data"]["alarm"] for e in _events(receiver, "environment.alarm", count=2)}
    # The failed execution counts within the alarm's 60 s period, then the alarm is OK again.
    assert raised == {"p-acme-sick-validator-dlq-depth", "p-acme-sick-failed-executions"}

    # The clean environment, sampled after its file completed, stays OK.
    ok = _health_until(service, "clean", lambda h: h["completedLastHour"] == 1)
    assert ok["status"] == "OK"
    assert ok["failedLastHour"] == 0
    assert {a["state"] for a in ok["alarms"]} == {"OK"}
    # The listing serves the same samples.
    listing = service.client.get("/environments", params={"tenant": "acme"}).json()["items"]
    by_name = {item["name"]: item["health"]["status"] for item in listing}
    assert by_name == {"sick": "ALARM", "clean": "OK"}
    # Several later samples send no second files.failed for the same file.
    checked = service.client.get("/environments/acme/sick").json()["health"]["checkedAt"]
    _health_until(service, "sick", lambda h: h["checkedAt"] > checked)
    time.sleep(1.5)
    assert len([r for r in receiver.snapshot() if r.json["type"] == "files.failed"]) == 1
