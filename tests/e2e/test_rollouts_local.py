"""Rollouts end to end on the local engine (docs/architecture.md §7, issue 11): a fleet of 12
environments on `gold@1` rolled to `gold@2` with a canary first, at most three at a time and a
canary file verifying each target; and a rollout that halts on its first failure, an update
that cannot apply because a resource was changed out of band."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.fleet import BETWEEN_THRESHOLDS, deployed, publish
from tests.e2e.out_of_band import break_status_table, function_configuration, repair_status_table
from tests.e2e.service import RunningService, running_service
from tests.e2e.trades import ROWS

# Twelve local environments and their updates take minutes on a loaded two-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TENANT = "fleet"
FLEET = [f"fleet{index:02d}" for index in range(12)]
FINAL = ("SUCCEEDED", "HALTED", "CANCELLED")
ACTIVE_TARGET = ("RUNNING", "VERIFYING")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    # Four operations at once, so the runner's global limit is not what bounds the rollouts.
    with running_service(
        tmp_path_factory.mktemp("e2e") / "data", max_concurrent_operations=4, rollout_interval_s=0.5
    ) as running:
        yield running


@pytest.fixture(scope="module")
def fleet(service: RunningService) -> list[dict[str, Any]]:
    """Twelve environments created together from `gold@1`."""
    publish(service, "gold", {"memory_mb": 512, "max_bad_row_ratio": 0.05})
    return service.create_many(TENANT, FLEET, timeout=900, template="gold")


def start_rollout(service: RunningService, **strategy: Any) -> dict[str, Any]:
    response = service.client.post(
        "/rollouts",
        json={
            "selector": {"tenants": [TENANT], "template": "gold", "outdated": True},
            "strategy": strategy,
        },
    )
    assert response.status_code == 202, response.text
    rollout: dict[str, Any] = response.json()
    return rollout


def follow(service: RunningService, rollout_id: str, timeout: float = 900) -> dict[str, Any]:
    """Poll the rollout to its end, checking on every sample what must hold at every moment:
    the canary alone, then at most maxConcurrent targets at once."""
    deadline = time.monotonic() + timeout
    while True:
        rollout: dict[str, Any] = service.client.get(f"/rollouts/{rollout_id}").json()
        bound = rollout["strategy"]["maxConcurrent"]
        targets = rollout["targets"]
        active = [t for t in targets if t["state"] in ACTIVE_TARGET]
        assert len(active) <= bound, active
        if any(t["canary"] and t["state"] not in ("SUCCEEDED", "FAILED") for t in targets):
            assert all(t["state"] == "PENDING" for t in targets if not t["canary"]), targets
        if rollout["state"] in FINAL:
            return rollout
        assert time.monotonic() < deadline, f"rollout stuck: {rollout}"
        time.sleep(0.2)


def moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_a_verified_rollout_brings_the_fleet_to_gold_2(
    service: RunningService, fleet: list[dict[str, Any]]
) -> None:
    latest = publish(service, "gold", {"memory_mb": 1024, "max_bad_row_ratio": 0.25})
    goal = latest["version"]
    listed = service.client.get(
        "/environments", params={"tenant": TENANT, "outdated": "true", "template": "gold"}
    ).json()
    assert sorted(item["name"] for item in listed["items"]) == FLEET
    reasons = {tuple(item["outdatedReasons"]) for item in listed["items"]}
    assert reasons == {(f"template gold@{goal - 1}, latest gold@{goal}",)}

    started = start_rollout(service, canary=1, maxConcurrent=3, maxFailures=0, verify=True)
    assert [t["name"] for t in started["targets"]] == FLEET
    rollout = follow(service, started["id"])
    assert rollout["state"] == "SUCCEEDED", rollout
    targets = rollout["targets"]
    assert [t["state"] for t in targets] == ["SUCCEEDED"] * 12, targets
    [canary] = [t for t in targets if t["canary"]]
    others = [t for t in targets if not t["canary"]]
    # The canary first and alone: every other target's operation started after it ended.
    assert all(moment(t["startedAt"]) >= moment(canary["finishedAt"]) for t in others)

    for target in targets:
        assert target["template"] == {"name": "gold", "version": goal}
        operation = service.client.get(f"/operations/{target['operationId']}").json()
        assert (operation["kind"], operation["state"]) == ("update", "SUCCEEDED")
        assert operation["rolloutId"] == rollout["id"]
        current = service.client.get(f"/environments/{TENANT}/{target['name']}").json()
        assert current["template"] == {"name": "gold", "version": goal}
        assert (current["outdated"], current["state"]) == (False, "READY")
        assert deployed(service, current) == ({1024}, "0.25")
        # Its canary file COMPLETED, is marked, and stays out of the ordinary listing.
        verification = target["verification"]
        assert (verification["status"], verification["canary"]) == ("COMPLETED", True)
        files = f"/environments/{TENANT}/{target['name']}/files"
        assert service.client.get(files).json()["total"] == 0
        canaries = service.client.get(files, params={"canary": "true"}).json()
        assert [f["fileId"] for f in canaries["items"]] == [verification["fileId"]]

    # The new threshold is the one the pipeline applies.
    first = service.client.get(f"/environments/{TENANT}/{FLEET[0]}").json()
    identifier = service.upload(first, "incoming/between.csv", BETWEEN_THRESHOLDS)
    item = service.wait_for_file(TENANT, FLEET[0], identifier)
    assert (item["status"], item["rejectedRows"], item["rowCount"]) == ("COMPLETED", 1, len(ROWS))
    listing = service.client.get(f"/environments/{TENANT}/{FLEET[0]}/files").json()
    assert ([f["fileId"] for f in listing["items"]], listing["counts"]) == (
        [identifier],
        {"COMPLETED": 1},
    )


def test_a_rollout_halts_on_a_target_that_cannot_apply(
    service: RunningService, fleet: list[dict[str, Any]]
) -> None:
    before = {
        name: service.client.get(f"/environments/{TENANT}/{name}").json()["config"]["memory_mb"]
        for name in FLEET
    }
    publish(service, "gold", {"memory_mb": 2048, "max_bad_row_ratio": 0.25})
    # The first target after the canary cannot be updated: its table was changed behind the
    # service's back, which the applier refuses to reconcile.
    broken = service.client.get(f"/environments/{TENANT}/{FLEET[1]}").json()
    break_status_table(service, broken)
    try:
        started = start_rollout(service, canary=1, maxConcurrent=3, maxFailures=0, verify=False)
        rollout = follow(service, started["id"])
    finally:
        repair_status_table(service, broken)
    assert rollout["state"] == "HALTED", rollout
    states = {t["name"]: t["state"] for t in rollout["targets"]}
    assert states[FLEET[0]] == "SUCCEEDED"  # the canary
    assert states[FLEET[1]] == "FAILED"
    failed = rollout["targets"][1]
    assert "differ from the spec" in failed["reason"]
    assert FLEET[1] in rollout["reason"]
    assert broken["outputs"]["statusTableName"] in rollout["reason"]
    # Targets already running when it failed finished; nothing started after the halt.
    assert set(states.values()) <= {"SUCCEEDED", "FAILED", "PENDING"}
    assert list(states.values()).count("FAILED") == 1
    pending = [name for name, state in states.items() if state == "PENDING"]
    assert len(pending) >= 12 - 1 - 3 - 2, states  # at most a few refills before the halt
    assert pending == FLEET[-len(pending) :]  # the untouched ones are the last in order
    for name in pending:
        target = next(t for t in rollout["targets"] if t["name"] == name)
        assert (target["operationId"], target["startedAt"]) == (None, None)
        environment = service.client.get(f"/environments/{TENANT}/{name}").json()
        assert environment["config"]["memory_mb"] == before[name]
        assert environment["outdated"] is True
        memory = function_configuration(service, environment, "processor")["MemorySize"]
        assert memory == before[name]
    assert service.client.get(f"/environments/{TENANT}/{FLEET[1]}").json()["state"] == "FAILED"
