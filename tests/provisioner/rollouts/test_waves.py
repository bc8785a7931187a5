"""The wave scheduler with the scripted engine: canary first and alone, the concurrency bound
sampled while running, the halt at maxFailures + 1 with running targets finishing, pause and
resume, cancel, a busy environment waiting, SKIPPED targets, verification."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from provisioner.config import Settings
from tests.factories import auth, create_api_key, wait_for_operation
from tests.provisioner.rollouts.conftest import (
    Sampler,
    ScriptedVerifier,
    publish,
    ready,
    show,
    start,
    targets_by_name,
    wait_rollout,
    wait_until,
)


def _fleet(client: TestClient, count: int, **script_of: dict[str, str]) -> list[str]:
    """`count` environments acme/e1… on gold@1, then gold@2 published: all outdated."""
    publish(client, "gold", {"memory_mb": 512})
    names = [f"e{index}" for index in range(1, count + 1)]
    for name in names:
        ready(
            client,
            "acme",
            name,
            template="gold",
            script={"resources": "2", **script_of.get(name, {})},
        )
    publish(client, "gold", {"memory_mb": 1024})
    return names


def _gate(tmp_path: Path, name: str) -> Path:
    """A file the scripted engine waits for: created now (so the create passes), removed by the
    test to hold the next operation, created again to release it."""
    gate = tmp_path / f"gate-{name}"
    gate.touch()
    return gate


def _state(client: TestClient, rollout_id: str, name: str) -> str:
    state: str = targets_by_name(show(client, rollout_id))[f"acme/{name}"]["state"]
    return state


def test_canary_first_and_alone_then_at_most_max_concurrent(
    client: TestClient, rollout_settings: Settings
) -> None:
    names = _fleet(client, 7, **{f"e{i}": {"delay": "0.15"} for i in range(1, 8)})
    rollout = start(
        client,
        {"selector": {"template": "gold"}, "strategy": {"canary": 1, "maxConcurrent": 3}},
    )
    assert rollout["state"] == "RUNNING"
    assert [t["name"] for t in rollout["targets"]] == names
    assert [t["canary"] for t in rollout["targets"]] == [True] + [False] * 6
    assert [t["wave"] for t in rollout["targets"]] == [0, 1, 1, 1, 2, 2, 2]
    assert {t["template"]["version"] for t in rollout["targets"]} == {2}
    sampler = Sampler(rollout_settings.resolved_database_url, rollout["id"])
    sampler.start()
    try:
        done = wait_rollout(client, rollout["id"])
    finally:
        sampler.stop.set()
        sampler.join()
    assert done["state"] == "SUCCEEDED", done
    assert done["counts"]["SUCCEEDED"] == 7
    assert sampler.samples > 20
    assert sampler.ran_beside_canary == set()
    assert sampler.max_active == 3  # the bound, reached and never passed
    assert sampler.max_running_operations <= 3
    targets = done["targets"]
    canary_end = targets[0]["finishedAt"]
    assert all(t["startedAt"] >= canary_end for t in targets[1:])
    for target in targets:
        operation = client.get(f"/operations/{target['operationId']}", headers=auth()).json()
        assert operation["rolloutId"] == rollout["id"]
        assert operation["kind"] == "update"
        assert target["attempts"] == 1
    listed = client.get("/environments?template=gold", headers=auth()).json()["items"]
    assert {
        (e["template"]["version"], e["outdated"], e["config"]["memory_mb"]) for e in listed
    } == {(2, False, 1024)}


def test_halts_after_max_failures_plus_one_and_running_targets_finish(
    client: TestClient, tmp_path: Path
) -> None:
    gate = _gate(tmp_path, "e1")
    fail = tmp_path / "fail-updates"
    _fleet(
        client,
        6,
        e1={"gate": str(gate)},
        e2={"fail-if": str(fail)},
        e3={"fail-if": str(fail)},
    )
    gate.unlink()
    fail.touch()
    rollout = start(
        client,
        {
            "selector": {"template": "gold"},
            "strategy": {"canary": 0, "maxConcurrent": 2, "maxFailures": 1},
        },
    )
    halting = wait_rollout(client, rollout["id"], states=("HALTING", "HALTED"))
    assert halting["state"] == "HALTING"  # e1 still runs
    by_name = targets_by_name(halting)
    assert by_name["acme/e1"]["state"] == "RUNNING"
    assert [by_name[f"acme/e{i}"]["state"] for i in (2, 3)] == ["FAILED", "FAILED"]
    assert "scripted failure" in by_name["acme/e3"]["reason"]
    assert "2 targets failed, more than maxFailures (1)" in halting["reason"]
    gate.touch()
    halted = wait_rollout(client, rollout["id"])
    assert halted["state"] == "HALTED"
    by_name = targets_by_name(halted)
    assert by_name["acme/e1"]["state"] == "SUCCEEDED"
    for name in ("e4", "e5", "e6"):
        assert by_name[f"acme/{name}"]["state"] == "PENDING"
        assert by_name[f"acme/{name}"]["operationId"] is None
    assert halted["counts"] == {
        "PENDING": 3,
        "RUNNING": 0,
        "VERIFYING": 0,
        "SUCCEEDED": 1,
        "FAILED": 2,
        "SKIPPED": 0,
    }
    assert halted["finishedAt"] is not None
    # the untouched environments are still on gold@1
    untouched = client.get("/environments/acme/e4", headers=auth()).json()
    assert untouched["template"]["version"] == 1
    assert untouched["lastOperation"]["kind"] == "create"


def test_pause_holds_new_targets_and_resume_continues(client: TestClient, tmp_path: Path) -> None:
    gate = _gate(tmp_path, "e1")
    _fleet(client, 3, e1={"gate": str(gate)})
    gate.unlink()
    rollout = start(
        client, {"selector": {"tenants": ["acme"]}, "strategy": {"canary": 0, "maxConcurrent": 1}}
    )
    wait_until(lambda: _state(client, rollout["id"], "e1") == "RUNNING", message="e1 running")
    paused = client.post(f"/rollouts/{rollout['id']}/pause", headers=auth())
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "PAUSED"
    assert client.post(f"/rollouts/{rollout['id']}/pause", headers=auth()).status_code == 409
    gate.touch()  # the running target finishes while paused
    wait_until(lambda: _state(client, rollout["id"], "e1") == "SUCCEEDED", message="e1 done")
    scheduler = client.app.state.services.rollouts  # type: ignore[attr-defined]
    for _ in range(3):
        scheduler.tick()
    held = show(client, rollout["id"])
    assert held["state"] == "PAUSED"
    assert [t["state"] for t in held["targets"]] == ["SUCCEEDED", "PENDING", "PENDING"]
    resumed = client.post(f"/rollouts/{rollout['id']}/resume", headers=auth())
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "RUNNING"
    assert client.post(f"/rollouts/{rollout['id']}/resume", headers=auth()).status_code == 409
    done = wait_rollout(client, rollout["id"])
    assert done["state"] == "SUCCEEDED"
    assert client.post(f"/rollouts/{rollout['id']}/pause", headers=auth()).status_code == 409


def test_cancel_skips_pending_cancels_unstarted_and_lets_running_finish(
    client: TestClient, tmp_path: Path
) -> None:
    """e1 runs; e2 is protected, so its update waits AWAITING_APPROVAL like any other; e3, e4
    are pending. Cancel: e3, e4 SKIPPED at once, e2's operation CANCELLED (SKIPPED), e1
    finishes and counts."""
    gate = _gate(tmp_path, "e1")
    _fleet(client, 4, e1={"gate": str(gate)})
    patched = client.patch("/environments/acme/e2", json={"protected": True}, headers=auth())
    assert patched.status_code == 200, patched.text
    gate.unlink()
    rollout = start(
        client, {"selector": {"template": "gold"}, "strategy": {"canary": 0, "maxConcurrent": 2}}
    )

    def e2_awaiting() -> bool:
        target = targets_by_name(show(client, rollout["id"]))["acme/e2"]
        if target["operationId"] is None:
            return False
        operation = client.get(f"/operations/{target['operationId']}", headers=auth()).json()
        return bool(operation["state"] == "AWAITING_APPROVAL")

    wait_until(e2_awaiting, message="e2 awaiting approval")
    assert _state(client, rollout["id"], "e1") == "RUNNING"
    cancelled = client.post(f"/rollouts/{rollout['id']}/cancel", headers=auth())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELLING"
    by_name = targets_by_name(cancelled.json())
    assert [by_name[f"acme/e{i}"]["state"] for i in (3, 4)] == ["SKIPPED", "SKIPPED"]
    e2_operation = by_name["acme/e2"]["operationId"]
    assert wait_for_operation(client, e2_operation)["state"] == "CANCELLED"
    wait_until(lambda: _state(client, rollout["id"], "e2") == "SKIPPED", message="e2 skipped")
    assert show(client, rollout["id"])["state"] == "CANCELLING"  # e1 still runs
    assert client.post(f"/rollouts/{rollout['id']}/cancel", headers=auth()).status_code == 409
    gate.touch()
    done = wait_rollout(client, rollout["id"])
    assert done["state"] == "CANCELLED"
    assert done["reason"].startswith("cancelled by ")
    assert [t["state"] for t in done["targets"]] == ["SUCCEEDED", "SKIPPED", "SKIPPED", "SKIPPED"]
    e2 = client.get("/environments/acme/e2", headers=auth()).json()
    assert (e2["state"], e2["template"]["version"]) == ("READY", 1)


def test_a_busy_environment_waits_pending_and_starts_later(
    client: TestClient, tmp_path: Path
) -> None:
    gate = _gate(tmp_path, "e1")
    _fleet(client, 2, e1={"gate": str(gate)})
    gate.unlink()
    refresh = client.post("/environments/acme/e1/refresh", headers=auth())
    assert refresh.status_code == 202
    rollout = start(
        client, {"selector": {"template": "gold"}, "strategy": {"canary": 0, "maxConcurrent": 2}}
    )
    wait_until(lambda: _state(client, rollout["id"], "e2") == "SUCCEEDED", message="e2 done")
    e1 = targets_by_name(show(client, rollout["id"]))["acme/e1"]
    assert e1["state"] == "PENDING"
    assert (
        e1["reason"] == f"waiting: environment busy with operation {refresh.json()['id']} (refresh)"
    )
    gate.touch()
    done = wait_rollout(client, rollout["id"])
    assert done["state"] == "SUCCEEDED"
    assert targets_by_name(done)["acme/e1"]["attempts"] == 1
    assert wait_for_operation(client, refresh.json()["id"])["state"] == "SUCCEEDED"


def test_targets_already_current_are_skipped_unless_forced(client: TestClient) -> None:
    _fleet(client, 2)
    first = wait_rollout(client, start(client, {"selector": {"template": "gold"}})["id"])
    assert first["state"] == "SUCCEEDED"
    again = start(client, {"selector": {"template": "gold"}})
    assert [t["state"] for t in again["targets"]] == ["SKIPPED", "SKIPPED"]
    assert again["targets"][0]["reason"] == "already on gold@2 and code c0de00000001"
    assert not any(t["canary"] for t in again["targets"])
    assert wait_rollout(client, again["id"])["state"] == "SUCCEEDED"
    forced = wait_rollout(
        client,
        start(client, {"selector": {"template": "gold"}, "strategy": {"force": True}})["id"],
    )
    assert [t["state"] for t in forced["targets"]] == ["SUCCEEDED", "SUCCEEDED"]
    # a pinned version back is a rollback, not "current"
    back = wait_rollout(
        client, start(client, {"selector": {"template": "gold"}, "templateVersion": 1})["id"]
    )
    assert back["state"] == "SUCCEEDED"
    listed = client.get("/environments?template=gold", headers=auth()).json()["items"]
    assert {(e["template"]["version"], e["config"]["memory_mb"]) for e in listed} == {(1, 512)}


def test_refresh_rollout_runs_drift_checks(client: TestClient) -> None:
    _fleet(client, 2)
    done = wait_rollout(
        client, start(client, {"selector": {"tenants": ["acme"]}, "action": "refresh"})["id"]
    )
    assert done["state"] == "SUCCEEDED"
    for target in done["targets"]:
        assert target["template"]["version"] is None
        operation = client.get(f"/operations/{target['operationId']}", headers=auth()).json()
        assert operation["kind"] == "refresh"
    # a refresh moves nothing: still gold@1
    assert client.get("/environments/acme/e1", headers=auth()).json()["template"]["version"] == 1


@pytest.mark.parametrize("failing", [False, True])
def test_verified_waves(client: TestClient, verifier: ScriptedVerifier, failing: bool) -> None:
    _fleet(client, 3)
    if failing:
        verifier.failing.add("acme/e2")
    rollout = start(
        client,
        {
            "selector": {"template": "gold"},
            "strategy": {"canary": 1, "maxConcurrent": 1, "verify": True},
        },
    )
    done = wait_rollout(client, rollout["id"])
    by_name = targets_by_name(done)
    if not failing:
        assert done["state"] == "SUCCEEDED"
        assert verifier.calls == ["acme/e1", "acme/e2", "acme/e3"]
        assert by_name["acme/e2"]["verification"] == {
            "status": "COMPLETED",
            "environment": "acme/e2",
        }
        return
    assert done["state"] == "HALTED"
    assert by_name["acme/e2"]["state"] == "FAILED"
    assert (
        by_name["acme/e2"]["reason"] == "verification failed: canary file of acme/e2 ended FAILED"
    )
    assert by_name["acme/e3"]["state"] == "PENDING"
    # the update itself succeeded: the environment is on gold@2, the target counts as failed
    operation = client.get(f"/operations/{by_name['acme/e2']['operationId']}", headers=auth())
    assert operation.json()["state"] == "SUCCEEDED"


def test_a_target_its_quota_refuses_fails_without_an_operation(client: TestClient) -> None:
    _fleet(client, 2)
    quota = client.put("/admin/tenants/acme", json={"maxMemoryMb": 512}, headers=auth())
    assert quota.status_code == 200, quota.text
    done = wait_rollout(
        client,
        start(client, {"selector": {"template": "gold"}, "strategy": {"maxFailures": 5}})["id"],
    )
    assert done["state"] == "SUCCEEDED"  # within the failure budget
    for target in done["targets"]:
        assert target["state"] == "FAILED"
        assert target["reason"].startswith("not started: ")
        assert "memory" in target["reason"]
        assert (target["operationId"], target["attempts"]) == (None, 0)
    assert client.get("/environments/acme/e1", headers=auth()).json()["template"]["version"] == 1


def test_a_protected_target_proceeds_once_approved(client: TestClient) -> None:
    _fleet(client, 1)
    client.patch("/environments/acme/e1", json={"protected": True}, headers=auth())
    rollout = start(client, {"selector": {"template": "gold"}})

    def awaiting() -> str | None:
        operation_id = show(client, rollout["id"])["targets"][0]["operationId"]
        if operation_id is None:
            return None
        operation = client.get(f"/operations/{operation_id}", headers=auth()).json()
        return operation_id if operation["state"] == "AWAITING_APPROVAL" else None

    wait_until(lambda: awaiting() is not None, message="the approval")
    operation_id = awaiting()
    assert show(client, rollout["id"])["targets"][0]["state"] == "RUNNING"
    other_admin = create_api_key(client, "admin")
    approved = client.post(f"/operations/{operation_id}/approve", headers=auth(other_admin))
    assert approved.status_code == 202, approved.text
    done = wait_rollout(client, rollout["id"])
    assert done["state"] == "SUCCEEDED"
    env = client.get("/environments/acme/e1", headers=auth()).json()
    assert (env["template"]["version"], env["config"]["memory_mb"]) == (2, 1024)
