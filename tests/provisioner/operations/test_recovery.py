"""Crash recovery: a killed worker or a killed service leaves INTERRUPTED operations whose
environments can be retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from provisioner.app import create_app
from tests.e2e.service import free_port
from tests.factories import ADMIN_KEY, auth, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _wait_for_file(path: Path, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text()


def test_killed_worker_interrupts_the_operation_and_a_retry_recovers(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url)
    pid_file = tmp_path / "pid"
    log = tmp_path / "runs.jsonl"
    body = environment_body(
        script={"gate": str(tmp_path / "never"), "pid": str(pid_file), "log": str(log)}
    )
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        operation = client.post("/environments", json=body, headers=auth()).json()
        worker_pid = int(_wait_for_file(pid_file))
        os.kill(worker_pid, signal.SIGKILL)
        finished = wait_for_operation(client, operation["id"])
        assert finished["state"] == "INTERRUPTED"
        assert "exited unexpectedly" in finished["error"]["message"]
        environment = client.get("/environments/acme/dev", headers=auth()).json()
        assert environment["state"] == "FAILED"
    # The service restarts; the environment is retried and recovers.
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        retry = client.post(
            "/environments", json=environment_body(script={"log": str(log)}), headers=auth()
        )
        assert retry.status_code == 202, retry.text
        assert wait_for_operation(client, retry.json()["id"])["state"] == "SUCCEEDED"
        assert client.get("/environments/acme/dev", headers=auth()).json()["state"] == "READY"
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert runs == [{"kind": "create", "recover": False}, {"kind": "create", "recover": True}]


def test_killed_service_leaves_interrupted_operations_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    pid_file = tmp_path / "pid"
    port = free_port()
    environment = {
        **os.environ,
        "PROVISIONER_DATA_DIR": str(data_dir),
        "PROVISIONER_DATABASE_URL": database_url,
        "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
        "PROVISIONER_HEARTBEAT_INTERVAL_S": "0.2",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.provisioner.scripted_app:create",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)
        body = environment_body(script={"gate": str(tmp_path / "never"), "pid": str(pid_file)})
        operation = httpx.post(f"{base}/environments", json=body, headers=auth()).json()
        worker_pid = int(_wait_for_file(pid_file))
        server.send_signal(signal.SIGKILL)  # a crash: no shutdown, no clean-up
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    # The orphaned worker notices the service is gone and stops on its own.
    deadline = time.monotonic() + 15
    while _alive(worker_pid):
        assert time.monotonic() < deadline, "orphaned worker kept running"
        time.sleep(0.1)

    settings = make_settings(data_dir, database_url, heartbeat_timeout_s=1.0)
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        finished = wait_for_operation(client, operation["id"], timeout=15)
        assert finished["state"] == "INTERRUPTED"
        assert "no heartbeat" in finished["error"]["message"]
        assert client.get("/environments/acme/dev", headers=auth()).json()["state"] == "FAILED"
        retry = client.post("/environments", json=environment_body(), headers=auth()).json()
        assert wait_for_operation(client, retry["id"])["state"] == "SUCCEEDED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"
