"""A real running service for end-to-end tests: uvicorn on a free port, in a thread of the test
process, with the local engine and its emulator on another free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import uvicorn
from pydantic import SecretStr

from provisioner.app import create_app
from provisioner.settings import Settings
from tests.factories import ADMIN_KEY, FINAL_STATES, auth


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningService:
    settings: Settings
    base_url: str
    client: httpx.Client

    def wait(self, operation_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.client.get(f"/operations/{operation_id}").json()
            if body["state"] in FINAL_STATES:
                return body
            assert time.monotonic() < deadline, f"operation stuck: {body}"
            time.sleep(0.1)

    def create(self, tenant: str, name: str, **body: Any) -> dict[str, Any]:
        response = self.client.post("/environments", json={"tenant": tenant, "name": name, **body})
        assert response.status_code == 202, response.text
        finished = self.wait(response.json()["id"])
        assert finished["state"] == "SUCCEEDED", finished
        environment: dict[str, Any] = self.client.get(f"/environments/{tenant}/{name}").json()
        return environment

    def s3(self, environment: dict[str, Any]) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=environment["awsEndpointUrl"],
            region_name=environment["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def wait_for_file(
        self, tenant: str, name: str, file_id: str, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(f"/environments/{tenant}/{name}/files/{file_id}")
            if response.status_code == 200 and response.json()["status"] in ("COMPLETED", "FAILED"):
                item: dict[str, Any] = response.json()
                return item
            assert time.monotonic() < deadline, f"file {file_id} not done: {response.text}"
            time.sleep(0.1)


@contextmanager
def running_service(data_dir: Path, **overrides: Any) -> Iterator[RunningService]:
    port = free_port()
    settings = Settings.model_validate(
        {
            "data_dir": data_dir,
            "admin_key": SecretStr(ADMIN_KEY),
            "engine": "local",
            "port": port,
            "local_aws_port": free_port(),
            "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 2.0,
            **overrides,
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, name="e2e-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the service failed to start"
        assert time.monotonic() < deadline, "the service did not start in time"
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, headers=auth(), timeout=30) as client:
            yield RunningService(settings, base_url, client)
    finally:
        server.should_exit = True
        thread.join(60)
