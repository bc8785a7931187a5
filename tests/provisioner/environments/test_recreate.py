"""After a restart of the local engine, nothing claims READY while it does not exist."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from provisioner.app import create_app
from provisioner.db import Database
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.service import (
    restore_ephemeral_environments,
)
from provisioner.operations.models import OperationState
from provisioner.operations.repository import OperationRepository
from tests.factories import auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def test_ready_environments_are_recreated_and_queued_work_on_them_cancelled(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        for name in ("ready", "busy"):
            operation = client.post(
                "/environments", json=environment_body(name=name), headers=auth()
            ).json()
            wait_for_operation(client, operation["id"])
    database = Database(settings.resolved_database_url)
    with database.session() as session:
        environments = EnvironmentRepository(session)
        for row in environments.in_states(["READY"]):
            row.engine = "local"
        busy = environments.get("acme", "busy")
        assert busy is not None
        # A refresh left queued when the service stopped.
        from provisioner.engines.base import OperationKind
        from provisioner.environments.service import SYSTEM_PRINCIPAL, EnvironmentService

        service = EnvironmentService(session, settings, "local")
        queued = service.run(SYSTEM_PRINCIPAL, "acme", "busy", OperationKind.REFRESH, None, "x")
        queued_id = queued.id
    with database.session() as session:
        recreated = restore_ephemeral_environments(
            session, settings, "local", lambda configs: {c.stack_name: "gone" for c in configs}
        )
        assert sorted(op.name for op in recreated) == ["busy", "ready"]
        assert all(op.kind == "create" and op.requested_by == "system" for op in recreated)
    with database.session() as session:
        operations = OperationRepository(session)
        refresh = operations.get(queued_id)
        assert refresh is not None
        assert refresh.state == OperationState.CANCELLED
        assert "re-creates this environment" in (refresh.error or "")
        for name in ("ready", "busy"):
            environment = EnvironmentRepository(session).get("acme", name)
            assert environment is not None
            assert environment.state == "PROVISIONING"
    database.dispose()
