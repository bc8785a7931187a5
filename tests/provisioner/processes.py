"""The service as a separate process (uvicorn with the scripted engine), for tests that measure
or kill it: memory, crashes, several replicas on one registry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.service import free_port
from tests.factories import ADMIN_KEY


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_service(data_dir: Path, database_url: str, **settings: str) -> ServiceProcess:
    """Start one; `settings` are PROVISIONER_* values by their lower-case suffix."""
    port = free_port()
    environment = {
        **os.environ,
        "PROVISIONER_DATA_DIR": str(data_dir),
        "PROVISIONER_DATABASE_URL": database_url,
        "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
        **{f"PROVISIONER_{name.upper()}": value for name, value in settings.items()},
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "tests.provisioner.scripted_app:create",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    return ServiceProcess(process, port)


def wait_until_up(service: ServiceProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert service.process.poll() is None, "the service exited"
        try:
            if httpx.get(f"{service.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.1)


@contextmanager
def services(
    data_dir: Path, database_url: str, count: int = 1, **settings: str
) -> Iterator[list[ServiceProcess]]:
    """`count` replicas on one registry (each with its own data dir), stopped afterwards."""
    started = [
        start_service(data_dir / f"replica-{index}", database_url, **settings)
        for index in range(count)
    ]
    try:
        for service in started:
            wait_until_up(service)
        yield started
    finally:
        for service in started:
            if service.process.poll() is None:
                service.process.terminate()
        for service in started:
            try:
                service.process.wait(30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(10)
