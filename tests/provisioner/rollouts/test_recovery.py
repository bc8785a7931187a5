"""Rollouts survive restarts and share replicas: a restart mid-rollout continues without running
a target twice (an INTERRUPTED target is retried once, twice interrupted it fails), a
verification cut short is run again, and two app instances on one PostgreSQL registry drive one
rollout with every target run exactly once."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text, update

from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.rollouts.models import RolloutTargetRow
from tests.factories import auth
from tests.provisioner.conftest import make_settings
from tests.provisioner.rollouts.conftest import (
    Sampler,
    ScriptedVerifier,
    build_app,
    publish,
    ready,
    show,
    start,
    targets_by_name,
    wait_rollout,
    wait_until,
)


def _runs(log: Path, kind: str) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)["kind"] == kind)


def _rollout_operations(client: TestClient, name: str, rollout_id: str) -> list[str]:
    """The states of the environment's operations for this rollout, oldest first."""
    items = client.get(f"/environments/acme/{name}/operations", headers=auth()).json()["items"]
    return [item["state"] for item in reversed(items) if item["rolloutId"] == rollout_id]


def _operation_running(client: TestClient, rollout_id: str, name: str) -> bool:
    return _rollout_operations(client, name, rollout_id)[-1:] == ["RUNNING"]


def _fleet(client: TestClient, tmp_path: Path, names: list[str], gated: set[str]) -> None:
    publish(client, "gold", {"memory_mb": 512})
    for name in names:
        script = {"log": str(tmp_path / f"{name}.log")}
        if name in gated:
            script["gate"] = str(tmp_path / "gate")
        ready(client, "acme", name, template="gold", script=script)
    publish(client, "gold", {"memory_mb": 1024})


def test_restart_mid_rollout_continues_and_retries_interrupted_targets_once(
    tmp_path: Path, rollout_settings: Settings, verifier: ScriptedVerifier
) -> None:
    names = ["e1", "e2", "e3", "e4"]
    gate = tmp_path / "gate"
    gate.touch()
    with TestClient(build_app(rollout_settings, verifier)) as client:
        _fleet(client, tmp_path, names, gated={"e1", "e2"})
        gate.unlink()
        rollout = start(
            client,
            {"selector": {"template": "gold"}, "strategy": {"canary": 0, "maxConcurrent": 2}},
        )
        for name in ("e1", "e2"):
            # Its worker is running the update (the first fork can take seconds when loaded).
            log = tmp_path / f"{name}.log"
            wait_until(lambda log=log: _runs(log, "update") == 1, message=name)
            assert _operation_running(client, rollout["id"], name)
    # The service stopped with e1 and e2 running: their operations were interrupted.
    gate.touch()
    with TestClient(build_app(rollout_settings, verifier)) as client:
        done = wait_rollout(client, rollout["id"])
        assert done["state"] == "SUCCEEDED", done
        by_name = targets_by_name(done)
        for name in ("e1", "e2"):
            assert by_name[f"acme/{name}"]["attempts"] == 2
            assert _rollout_operations(client, name, rollout["id"]) == ["INTERRUPTED", "SUCCEEDED"]
            assert _runs(tmp_path / f"{name}.log", "update") == 2
        for name in ("e3", "e4"):
            assert by_name[f"acme/{name}"]["attempts"] == 1
            assert _rollout_operations(client, name, rollout["id"]) == ["SUCCEEDED"]
            assert _runs(tmp_path / f"{name}.log", "update") == 1
        events = client.get("/environments?template=gold", headers=auth()).json()["items"]
        assert {item["template"]["version"] for item in events} == {2}


def test_a_target_interrupted_twice_fails(
    tmp_path: Path, rollout_settings: Settings, verifier: ScriptedVerifier
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    with TestClient(build_app(rollout_settings, verifier)) as client:
        _fleet(client, tmp_path, ["e1"], gated={"e1"})
        gate.unlink()
        rollout = start(client, {"selector": {"template": "gold"}})
        wait_until(lambda: _operation_running(client, rollout["id"], "e1"), message="first run")
    with TestClient(build_app(rollout_settings, verifier)) as client:
        wait_until(
            lambda: _rollout_operations(client, "e1", rollout["id"]) == ["INTERRUPTED", "RUNNING"],
            message="the retry",
        )
    with TestClient(build_app(rollout_settings, verifier)) as client:
        done = wait_rollout(client, rollout["id"])
        assert done["state"] == "HALTED"
        target = done["targets"][0]
        assert (target["state"], target["attempts"]) == ("FAILED", 2)
        assert target["reason"].startswith("update interrupted")
        assert _rollout_operations(client, "e1", rollout["id"]) == ["INTERRUPTED", "INTERRUPTED"]
        # Nothing retries it a third time.
        client.app.state.services.rollouts.tick()  # type: ignore[attr-defined]
        assert len(_rollout_operations(client, "e1", rollout["id"])) == 2
    gate.touch()


def test_a_verification_cut_short_by_a_restart_runs_again(
    tmp_path: Path, rollout_settings: Settings
) -> None:
    held = ScriptedVerifier()
    held.gate = threading.Event()  # never set: the shutdown cuts it short
    with TestClient(build_app(rollout_settings, held)) as client:
        _fleet(client, tmp_path, ["e1"], gated=set())
        rollout = start(client, {"selector": {"template": "gold"}, "strategy": {"verify": True}})
        wait_until(lambda: held.calls == ["acme/e1"], message="the verification")
        assert show(client, rollout["id"])["targets"][0]["state"] == "VERIFYING"
    fresh = ScriptedVerifier()
    with TestClient(build_app(rollout_settings, fresh)) as client:
        done = wait_rollout(client, rollout["id"])
        assert done["state"] == "SUCCEEDED"
        assert fresh.calls == ["acme/e1"]
        assert done["targets"][0]["verification"]["status"] == "COMPLETED"
        assert _rollout_operations(client, "e1", rollout["id"]) == ["SUCCEEDED"]


@pytest.mark.postgres
def test_two_replicas_drive_one_rollout_and_run_every_target_once(
    tmp_path: Path, database_url: str, verifier: ScriptedVerifier
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL registry; the SQLite variant is the restart test")
    settings = [
        make_settings(
            tmp_path / f"data{index}",
            database_url,
            rollout_interval_s=0.05,
            max_concurrent_operations=8,
        )
        for index in (1, 2)
    ]
    names = [f"e{index}" for index in range(1, 9)]
    with (
        TestClient(build_app(settings[0], verifier)) as one,
        TestClient(build_app(settings[1], verifier)) as two,
    ):
        _fleet(one, tmp_path, names, gated=set())
        rollout = start(
            two,
            {
                "selector": {"template": "gold"},
                "strategy": {"canary": 1, "maxConcurrent": 3, "verify": True},
            },
        )
        sampler = Sampler(database_url, rollout["id"])
        sampler.start()
        try:
            done = wait_rollout(one, rollout["id"])
        finally:
            sampler.stop.set()
            sampler.join()
        assert done["state"] == "SUCCEEDED", done
    assert sampler.max_active <= 3
    assert sampler.ran_beside_canary == set()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        per_target = connection.execute(
            text(
                "SELECT name, count(*), min(state) FROM operations"
                " WHERE rollout_id = :id GROUP BY name ORDER BY name"
            ),
            {"id": rollout["id"]},
        ).all()
        events = connection.execute(
            text("SELECT seq FROM rollout_events WHERE rollout_id = :id ORDER BY seq"),
            {"id": rollout["id"]},
        ).all()
    engine.dispose()
    assert [(row[0], row[1], row[2]) for row in per_target] == [
        (name, 1, "SUCCEEDED") for name in names
    ]
    assert [row[0] for row in events] == list(range(1, len(events) + 1))
    for name in names:
        assert _runs(tmp_path / f"{name}.log", "update") == 1
    assert sorted(verifier.calls) == sorted(f"acme/{name}" for name in names)


def test_a_verification_claimed_by_a_dead_replica_is_taken_over_once_stale(
    tmp_path: Path, rollout_settings: Settings
) -> None:
    held = ScriptedVerifier()
    held.gate = threading.Event()
    with TestClient(build_app(rollout_settings, held)) as client:
        _fleet(client, tmp_path, ["e1"], gated=set())
        rollout = start(client, {"selector": {"template": "gold"}, "strategy": {"verify": True}})
        wait_until(lambda: held.calls == ["acme/e1"], message="the verification")
    # As a replica that died mid-verification leaves it: claimed, its claim still fresh.
    engine = create_engine(rollout_settings.resolved_database_url)
    claim = update(RolloutTargetRow).values(verify_claimed_by="dead:1:replica")
    with engine.begin() as connection:
        connection.execute(claim.values(verify_claimed_at=utcnow() + timedelta(hours=1)))
    fresh = ScriptedVerifier()
    with TestClient(build_app(rollout_settings, fresh)) as client:
        scheduler = client.app.state.services.rollouts  # type: ignore[attr-defined]
        for _ in range(3):
            scheduler.tick()
        assert fresh.calls == []  # a live claim is left alone
        assert show(client, rollout["id"])["targets"][0]["state"] == "VERIFYING"
        with engine.begin() as connection:
            connection.execute(claim.values(verify_claimed_at=utcnow() - timedelta(hours=1)))
        done = wait_rollout(client, rollout["id"])
        assert done["state"] == "SUCCEEDED"
        assert fresh.calls == ["acme/e1"]
    engine.dispose()
