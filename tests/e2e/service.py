"""A real running service for end-to-end tests: uvicorn on a free port, in a thread of the test
process, with the local engine and its emulator on another free port; or the service as its own
process (`service_process`), for tests that kill it."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
import httpx
import uvicorn
from pydantic import SecretStr

from handlers.core.ids import file_id
from provisioner.app import create_app
from provisioner.config import Settings
from tests.factories import ADMIN_KEY, FINAL_STATES, auth

# For a process that binds the port itself, later: outside the kernel's ephemeral range
# (32768-60999), where a port picked by binding port 0 could be handed, before that process
# binds it, to any other socket bound to port 0 or to an outgoing connection (it happened to
# a restarted service). Each xdist worker picks from its own slice.
_PORTS: Final = range(20000, 32768)


def free_port() -> int:
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slice_ = _PORTS[worker % workers :: workers]
    for port in random.sample(slice_, 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 200 tries")


@dataclass
class RunningService:
    settings: Settings
    base_url: str
    client: httpx.Client
    app: Any = None  # the FastAPI app, for what only the process itself reaches (the scheduler)

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

    def create_many(
        self, tenant: str, names: list[str], timeout: float = 300, **body: Any
    ) -> list[dict[str, Any]]:
        """Create several environments at once (the runner works on them in parallel)."""
        operations = []
        for name in names:
            response = self.client.post(
                "/environments", json={"tenant": tenant, "name": name, **body}
            )
            assert response.status_code == 202, response.text
            operations.append(response.json()["id"])
        for operation in operations:
            finished = self.wait(operation, timeout=timeout)
            assert finished["state"] == "SUCCEEDED", finished
        return [self.client.get(f"/environments/{tenant}/{name}").json() for name in names]

    def s3(self, environment: dict[str, Any]) -> Any:
        return self.aws(environment, "s3")

    def aws(self, environment: dict[str, Any], service: str) -> Any:
        """A boto3 client of the emulator, as any AWS tool would use it."""
        return boto3.client(
            service,
            endpoint_url=environment["awsEndpointUrl"],
            region_name=environment["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def upload(self, environment: dict[str, Any], key: str, body: bytes) -> str:
        """Put an object in the environment's bucket; returns its fileId."""
        bucket = environment["outputs"]["bucketName"]
        version = self.s3(environment).put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
        return file_id(bucket, key, version)

    def dead_letter(self, environment: dict[str, Any], key: str, body: bytes) -> str:
        """An object whose S3 event sits in the ingest DLQ, as if ingest had given up on it.
        The key should be outside incoming/, so that the upload itself starts nothing."""
        bucket, region = environment["outputs"]["bucketName"], environment["region"]
        version = self.s3(environment).put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
        event = {
            "version": "0", "id": f"dead-{version}", "detail-type": "Object Created",
            "source": "aws.s3", "account": "123456789012", "time": "2026-11-27T00:00:00Z",
            "region": region, "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0", "bucket": {"name": bucket}, "request-id": "r",
                "object": {"key": key, "size": len(body), "etag": "x", "version-id": version},
                "requester": "123456789012", "reason": "PutObject",
            },
        }  # fmt: skip
        sqs = boto3.client(
            "sqs",
            endpoint_url=environment["awsEndpointUrl"],
            region_name=region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        sqs.send_message(
            QueueUrl=environment["outputs"]["ingestDlqUrl"],
            MessageBody=json.dumps(event),
            MessageGroupId="incoming",
        )
        return file_id(bucket, key, version)

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
def serve(make_app: Callable[[int], Any]) -> Iterator[str]:
    """Run the app `make_app(port)` builds with uvicorn in a thread, on a socket bound here
    first (no port race; the app may need its own port, e.g. for its apiEndpoint outputs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(port), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="e2e-service", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the service failed to start"
        assert time.monotonic() < deadline, "the service did not start in time"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@contextmanager
def running_service(data_dir: Path, **overrides: Any) -> Iterator[RunningService]:
    """The service with the local engine (by default), in this process."""
    settings: Settings | None = None
    app: Any = None

    def make_app(port: int) -> Any:
        nonlocal settings, app
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
        app = create_app(settings)
        return app

    with serve(make_app) as base_url:
        assert settings is not None
        with httpx.Client(base_url=base_url, headers=auth(), timeout=30) as client:
            yield RunningService(settings, base_url, client, app)


@contextmanager
def service_process(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], RunningService]]:
    """`python -m provisioner` with the local engine, as `make run` starts it."""
    port, aws_port = free_port(), free_port()
    environment = {
        **os.environ,
        "PROVISIONER_DATA_DIR": str(data_dir),
        "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
        "PROVISIONER_ENGINE": "local",
        "PROVISIONER_PORT": str(port),
        "PROVISIONER_LOCAL_AWS_PORT": str(aws_port),
        "PROVISIONER_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, "-m", "provisioner"], env=environment)
    settings = Settings(data_dir=data_dir, port=port, local_aws_port=aws_port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, headers=auth(), timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, "the service exited"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
            yield server, RunningService(settings, base_url, client)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)
