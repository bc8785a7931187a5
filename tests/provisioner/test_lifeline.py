"""The start-up sweep: what a dead run's children left behind is killed at the next start, by
pid and start time, so a process that merely reuses a recorded pid survives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
from fastapi.testclient import TestClient

from provisioner.app import create_app
from provisioner.lifeline import record_children
from tests.factories import auth
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _identity(pid: int) -> dict[str, float | int]:
    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def test_the_next_start_kills_a_dead_runs_leftovers_and_nothing_else(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url)
    settings.data_dir.mkdir(parents=True)
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    leftover = subprocess.Popen(sleep)
    bystander = subprocess.Popen(sleep)  # its pid is recorded, with another start time
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_identity = _identity(dead.pid)
    dead.wait()
    record = {
        "service": dead_identity,
        "children": [
            _identity(leftover.pid),
            {"pid": bystander.pid, "started": _identity(bystander.pid)["started"] - 100},
        ],
    }
    (settings.data_dir / "children-1.json").write_text(json.dumps(record))
    try:
        with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
            assert client.get("/environments", headers=auth()).status_code == 200
            assert leftover.wait(5) == -9
            assert bystander.poll() is None
            assert not (settings.data_dir / "children-1.json").exists()
            # This run keeps its own record.
            assert record_children(settings.data_dir) >= 0
            assert list(settings.data_dir.glob("children-*.json"))
        assert not list(settings.data_dir.glob("children-*.json"))  # a clean stop
    finally:
        for process in (leftover, bystander):
            process.kill()
            process.wait()
