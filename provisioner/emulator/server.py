"""The AWS emulator's HTTP server: moto's `ThreadedMotoServer`, configured for the pipeline.

It runs in this process (so `lambda_dispatch` can hook its Lambda backend) and configures
moto process-wide: Step Functions executes definitions, Lambda uses the no-Docker backend, and
`MOTO_PORT` names the real port, because the Step Functions interpreter calls its service
integrations back at `localhost:$MOTO_PORT` (5000 otherwise). Hence one emulator per process.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from types import TracebackType
from typing import Any, Final

import boto3
import structlog
from botocore.config import Config

from provisioner.emulator.gate import RequestGate

logger = structlog.get_logger(__name__)

# What the pipeline needs from moto (moto.core.config.default_user_config keys).
EMULATOR_CONFIG: Final[dict[str, dict[str, bool]]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

_ACTIVE_LOCK: Final = threading.Lock()
_active: EmulatorServer | None = None


def _check_free(host: str, port: int) -> None:
    """Fail clearly on a taken port: moto's server thread would die and leave start() waiting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As werkzeug binds: a port in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot start the AWS emulator on {host}:{port}: {exc}") from exc


class EmulatorServer:
    """moto in server mode on `host:port` (port 0: an ephemeral port, see `port` once started)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: Any = None  # moto.server.ThreadedMotoServer (untyped)
        self._saved_config: dict[str, Any] = {}
        self._saved_moto_port: str | None = None
        self._gate: RequestGate | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def gate(self) -> RequestGate:
        """The gate every request passes (snapshots hold requests there)."""
        if self._gate is None:
            raise RuntimeError("the emulator is not running")
        return self._gate

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        global _active
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        with _ACTIVE_LOCK:
            if _active is not None:
                raise RuntimeError(
                    "an AWS emulator is already running in this process (MOTO_PORT and moto's "
                    "configuration are process-wide)"
                )
            if self._requested_port:
                _check_free(self._host, self._requested_port)
            server = ThreadedMotoServer(
                ip_address=self._host, port=self._requested_port, verbose=False
            )
            server.start()
            # Nothing knows the port yet, so no request has arrived: every one passes the gate.
            wsgi_server = server._server
            if wsgi_server is None:
                raise RuntimeError("moto's server did not start")
            self._gate = RequestGate(wsgi_server.app)
            wsgi_server.app = self._gate
            _, port = server.get_host_and_port()
            self._server = server
            self._port = int(port)
            for key, value in EMULATOR_CONFIG.items():
                self._saved_config[key] = default_user_config.get(key)
                default_user_config[key] = dict(value)  # type: ignore[literal-required]
            self._saved_moto_port = os.environ.get("MOTO_PORT")
            os.environ["MOTO_PORT"] = str(self._port)
            _active = self
        logger.info("emulator.server.started", endpoint=self.endpoint_url)

    def stop(self) -> None:
        global _active
        from moto.core.config import default_user_config

        with _ACTIVE_LOCK:
            if self._server is None:
                return
            self._server.stop()
            self._server = None
            self._gate = None
            for key, value in self._saved_config.items():
                if value is None:
                    default_user_config.pop(key, None)  # type: ignore[misc]
                else:
                    default_user_config[key] = value  # type: ignore[literal-required]
            self._saved_config.clear()
            if self._saved_moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._saved_moto_port
            if _active is self:
                _active = None
        logger.info("emulator.server.stopped", port=self._port)
        self._port = None

    def reset(self) -> None:
        """Forget every emulated resource (moto's reset); the configuration stays."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            status = json.loads(response.read() or b"{}").get("status")
        if status != "ok":
            raise RuntimeError(f"the emulator did not reset: {status!r}")
        logger.info("emulator.server.reset", endpoint=self.endpoint_url)

    def probe(self, timeout_s: float = 2.0) -> None:
        """Raise unless the emulator answers an S3 ListBuckets (for readiness checks)."""
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"max_attempts": 1, "mode": "standard"},
            ),
        )
        client.list_buckets()

    def healthy(self, timeout_s: float = 2.0) -> bool:
        if not self.running:
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.probe(timeout_s)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("emulator.server.unhealthy", endpoint=self.endpoint_url, error=str(exc))
            return False
        return True

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
