"""The AWS emulator's HTTP server: moto's WSGI app behind one request gate, on two listeners.
DynamoDB's requests and S3's writes pass moto one at a time (`atomicity`).

It runs in this process (so `lambda_dispatch` can hook its Lambda backend) and configures
moto process-wide: Step Functions executes definitions, Lambda uses the no-Docker backend,
what changes moto outside a request the gate holds is counted or held there (an execution's
end: `execution_ends`; an SQS receive: `sqs_receives`), and `MOTO_PORT` names the internal
listener, because the Step Functions interpreter calls its service integrations back at
`localhost:$MOTO_PORT` (5000 otherwise). Hence one emulator per process.

The published listener (`host:port`, what users' `--endpoint-url` names) answers a write only
once it is durable (`acknowledgement`, from `publish` on); the internal one (loopback, an
ephemeral port: `internal_endpoint_url`) serves the service's own traffic (the interpreter,
the runtime workers, the service's clients) at once. Both pass the one gate, so a snapshot's
pause holds them both.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import boto3
import structlog
from botocore.config import Config

from provisioner.emulator import MOTO_API_PATH, execution_ends, sqs_receives
from provisioner.emulator.acknowledgement import DurableAcknowledgements
from provisioner.emulator.atomicity import AtomicRequests
from provisioner.emulator.gate import Environ, RequestGate, StartResponse, WsgiApp

logger = structlog.get_logger(__name__)

# What the pipeline needs from moto (moto.core.config.default_user_config keys).
EMULATOR_CONFIG: Final[dict[str, dict[str, bool]]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
INTERNAL_HOST: Final = "127.0.0.1"

_ACTIVE_LOCK: Final = threading.Lock()
_active: EmulatorServer | None = None


_NOT_SERVED: Final = b"moto's own API is not served on the published endpoint"


def _without_moto_api(app: WsgiApp, environ: Environ, start_response: StartResponse) -> Any:
    """The published listener serves the AWS APIs only: moto's own (`/moto-api/`: reset,
    state dumps, the dashboard) would let any client wipe or read every environment."""
    if not str(environ.get("PATH_INFO", "")).startswith(MOTO_API_PATH):
        return app(environ, start_response)
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_NOT_SERVED)))],
    )
    return [_NOT_SERVED]


def _check_free(host: str, port: int) -> None:
    """Fail clearly on a taken port: werkzeug would print and exit the process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As werkzeug binds: a port in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot start the AWS emulator on {host}:{port}: {exc}") from exc


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class _Listener:
    """One werkzeug server (a thread per request) on a bound socket; serving from `serve`."""

    def __init__(self, host: str, port: int, app: WsgiApp) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        if port:
            _check_free(host, port)
        # Bound and listening now: connections wait in the backlog until `serve`.
        self.server = make_server(host, port, app, True, request_handler=MotoRequestHandler)
        self.port = int(self.server.server_address[1])
        self._thread: threading.Thread | None = None

    def serve(self, app: WsgiApp) -> None:
        self.server.app = app
        self._thread = threading.Thread(
            target=self.server.serve_forever, name=f"emulator-listener:{self.port}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()


# Host names come from clients: the memory of their backends is bounded.
BACKEND_LOOKUPS_REMEMBERED: Final = 512


def remember_backend_lookups(dispatcher: Any) -> None:
    """Make moto's dispatcher remember which backend serves a host name.

    moto 5.2.x resolves it on every request (`DomainDispatcherApplication.get_backend_for_host`,
    under the dispatcher's one lock): it lists moto's package directory (an `os.listdir` and an
    `isdir` per service) and then tries every service's URL patterns. The answer depends on the
    host name alone (the patterns are fixed when the dispatcher is built), so it is computed
    once per name; py-spy put ~4 % of the service process's CPU there under `bench.dataplane`.
    """
    lookup = dispatcher.get_backend_for_host
    dispatcher.get_backend_for_host = functools.lru_cache(maxsize=BACKEND_LOOKUPS_REMEMBERED)(
        lookup
    )


class EmulatorServer:
    """moto in server mode on `host:port` (port 0: an ephemeral port, see `port` once started)
    and on an internal loopback port; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._internal: _Listener | None = None
        self._published: _Listener | None = None
        self._serving_published = False
        self._saved_config: dict[str, Any] = {}
        self._saved_moto_port: str | None = None
        self._gate: RequestGate | None = None

    @property
    def port(self) -> int:
        """The published port."""
        if self._published is None:
            raise RuntimeError("the emulator is not running")
        return self._published.port

    @property
    def internal_port(self) -> int:
        if self._internal is None:
            raise RuntimeError("the emulator is not running")
        return self._internal.port

    @property
    def endpoint_url(self) -> str:
        """The published endpoint: for clients outside the service."""
        return _url(self._host, self.port)

    @property
    def internal_endpoint_url(self) -> str:
        """The internal endpoint: for the service's own clients and workers."""
        return _url(INTERNAL_HOST, self.internal_port)

    @property
    def gate(self) -> RequestGate:
        """The gate every request passes (snapshots hold requests there)."""
        if self._gate is None:
            raise RuntimeError("the emulator is not running")
        return self._gate

    @property
    def running(self) -> bool:
        return self._internal is not None

    def start(self) -> None:
        """Serve the internal listener and bind the published one (served from `publish`)."""
        global _active
        from moto.core.config import default_user_config
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        with _ACTIVE_LOCK:
            if _active is not None:
                raise RuntimeError(
                    "an AWS emulator is already running in this process (MOTO_PORT and moto's "
                    "configuration are process-wide)"
                )
            dispatcher = DomainDispatcherApplication(create_backend_app)
            remember_backend_lookups(dispatcher)
            gate = RequestGate(AtomicRequests(dispatcher))
            published = _Listener(self._host, self._requested_port, gate)
            try:
                internal = _Listener(INTERNAL_HOST, 0, gate)
            except BaseException:
                published.close()
                raise
            internal.serve(gate)
            execution_ends.install(gate.record_change)
            sqs_receives.install(gate.record_change)
            self._gate, self._published, self._internal = gate, published, internal
            for key, value in EMULATOR_CONFIG.items():
                self._saved_config[key] = default_user_config.get(key)
                default_user_config[key] = dict(value)  # type: ignore[literal-required]
            self._saved_moto_port = os.environ.get("MOTO_PORT")
            os.environ["MOTO_PORT"] = str(internal.port)
            _active = self
        logger.info(
            "emulator.server.started",
            endpoint=self.endpoint_url,
            internal_endpoint=self.internal_endpoint_url,
        )

    def publish(self, wait_durable: Callable[[], None] | None = None) -> None:
        """Answer on the published listener; with `wait_durable`, writes only once durable
        (before that, clients that connected wait: nothing is answered before the restore)."""
        if self._published is None or self._gate is None:
            raise RuntimeError("the emulator is not running")
        if self._serving_published:
            return
        app: WsgiApp = self._gate
        if wait_durable is not None:
            app = DurableAcknowledgements(self._gate, wait_durable)
        self._published.serve(functools.partial(_without_moto_api, app))
        self._serving_published = True
        logger.info(
            "emulator.server.published", endpoint=self.endpoint_url, durable=bool(wait_durable)
        )

    def stop(self) -> None:
        global _active
        from moto.core.config import default_user_config

        with _ACTIVE_LOCK:
            if self._internal is None or self._published is None:
                return
            port = self._published.port
            self._published.close()
            self._internal.close()
            self._published = self._internal = None
            self._serving_published = False
            self._gate = None
            execution_ends.uninstall()
            sqs_receives.uninstall()
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
        logger.info("emulator.server.stopped", port=port)

    def reset(self) -> None:
        """Forget every emulated resource (moto's reset); the configuration stays."""
        request = urllib.request.Request(
            f"{self.internal_endpoint_url}{MOTO_API_PATH}reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            status = json.loads(response.read() or b"{}").get("status")
        if status != "ok":
            raise RuntimeError(f"the emulator did not reset: {status!r}")
        logger.info("emulator.server.reset", endpoint=self.internal_endpoint_url)

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
        self.publish()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
