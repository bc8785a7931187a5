"""`provisioner rollout …` against the service (scripted engine)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.cli.conftest import Outcome

Cli = Callable[..., Outcome]


def _fleet(cli: Cli, service: TestClient, names: list[str], **tags: dict[str, str]) -> None:
    assert cli("template", "publish", "gold", "--config", "memory_mb=512").code == 0
    for name in names:
        body = environment_body("acme", name, template="gold", tags=tags.get(name, {}))
        created = service.post("/environments", json=body, headers=auth())
        assert created.status_code == 202, created.text
        assert wait_for_operation(service, created.json()["id"])["state"] == "SUCCEEDED"
    assert cli("template", "publish", "gold", "--config", "memory_mb=1024").code == 0


def test_start_watch_follows_the_rollout_to_success(cli: Cli, service: TestClient) -> None:
    _fleet(cli, service, ["dev", "prod"])
    outcome = cli(
        "rollout", "start", "--template", "gold", "--outdated", "--to", "2",
        "--canary", "1", "--max-concurrent", "2", "--watch",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "SUCCEEDED" in outcome.out
    assert "acme/dev (canary)" in outcome.out
    assert "gold@1 → 2" in outcome.out
    progress = [line for line in outcome.err.splitlines() if line.startswith("target.started")]
    assert [line.split(": ", 1)[1] for line in progress] == [
        "acme/dev running",
        "acme/prod running",
    ]
    assert outcome.err.splitlines()[-1].startswith("rollout.succeeded: rollout succeeded")
    listed = service.get("/environments?template=gold", headers=auth()).json()["items"]
    assert {item["template"]["version"] for item in listed} == {2}


def test_list_show_pause_resume_and_watch(cli: Cli, service: TestClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    _fleet(cli, service, ["dev", "prod"], dev={"script-gate": str(gate)})
    gate.unlink()
    started = cli(
        "rollout", "start", "--env", "acme/dev", "--env", "acme/prod", "--canary", "0", "--json"
    )
    assert started.code == 0, started.err
    rollout = json.loads(started.out)
    assert [t["name"] for t in rollout["targets"]] == ["dev", "prod"]
    paused = cli("rollout", "pause", rollout["id"])
    assert paused.code == 0, paused.err
    assert f"update rollout {rollout['id']} PAUSED" in paused.out
    again = cli("rollout", "pause", rollout["id"])
    assert again.code == 1
    assert "conflict" in again.error_line()
    listed = cli("rollout", "list", "--state", "PAUSED")
    assert rollout["id"] in listed.out
    assert "2 targets" in listed.out
    shown = cli("rollout", "show", rollout["id"])
    assert "acme/dev" in shown.out
    assert "PAUSED" in shown.out
    assert cli("rollout", "resume", rollout["id"]).code == 0
    gate.touch()
    watched = cli("rollout", "watch", rollout["id"], "--json")
    assert watched.code == 0, watched.err
    assert json.loads(watched.out)["state"] == "SUCCEEDED"


def test_a_halted_rollout_exits_3_with_its_reason(
    cli: Cli, service: TestClient, tmp_path: Path
) -> None:
    fail = tmp_path / "fail"
    _fleet(cli, service, ["dev", "prod"], dev={"script-fail-if": str(fail)})
    fail.touch()
    outcome = cli("rollout", "start", "--tenant", "acme", "--watch")
    assert outcome.code == 3
    line = outcome.error_line()
    assert line.startswith("error: rollout ")
    assert "HALTED: 1 targets failed, more than maxFailures (0)" in line
    assert "target.failed: acme/dev failed" in outcome.err


def test_errors_are_one_line(cli: Cli, service: TestClient) -> None:
    empty = cli("rollout", "start")
    assert empty.code == 1
    assert "selector" in empty.error_line()
    nothing = cli("rollout", "start", "--tenant", "nobody")
    assert "selector: matches no environment" in nothing.error_line()
    for command in ("show", "watch", "pause", "resume", "cancel"):
        missing = cli("rollout", command, "nosuch")
        assert missing.code == 1, command
        assert "not_found" in missing.error_line() or "404" in missing.error_line()
    bad_tag = cli("rollout", "start", "--tag", "novalue")
    assert bad_tag.code == 2
