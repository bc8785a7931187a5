"""Restarting the service with the local engine: the emulator keeps its state in memory, so
READY environments are re-created empty, and nothing claims READY while it does not exist."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.service import running_service
from tests.e2e.trades import trades_csv


def test_restart_recreates_ready_environments_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_service(data) as first:
        environment = first.create("acme", "keep")
        identifier = first.upload(environment, "incoming/a.csv", trades_csv())
        assert first.wait_for_file("acme", "keep", identifier)["status"] == "COMPLETED"
    with running_service(data) as second:
        # Nothing claims READY before it exists again: it is being re-created.
        current = second.client.get("/environments/acme/keep").json()
        assert current["state"] in ("PROVISIONING", "READY")
        assert current["lastOperation"]["requestedBy"] == "system"
        second.wait(current["lastOperation"]["id"])
        recreated = second.client.get("/environments/acme/keep").json()
        assert recreated["state"] == "READY"
        events = second.client.get(f"/operations/{current['lastOperation']['id']}/events")
        assert "keeps its state in memory" in events.text
        assert second.client.get("/environments/acme/keep/files").json()["total"] == 0
        fresh = second.upload(recreated, "incoming/b.csv", trades_csv())
        assert second.wait_for_file("acme", "keep", fresh)["status"] == "COMPLETED"
